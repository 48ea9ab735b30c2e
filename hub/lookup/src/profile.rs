//! The MPPs' own profiles (`--mpp-profiles-file`): each MPP's name, logo,
//! address, opening hours, contact and complaint channel (SP4N-LAPOR!),
//! by the BPS region code its tracking numbers start with, shown in the
//! header and footer of the citizens' pages. A region without a profile
//! gets the neutral header ("Mal Pelayanan Publik") and no footer.
//!
//! The file is TOML, read once at start and refused with a message naming
//! the profile and field at fault (the hub does not start on a bad file):
//!
//! ```toml
//! [[mpp]]
//! region_code = "1771"
//! name = "Mal Pelayanan Publik Kota Bengkulu"
//! address = "Jl. Basuki Rahmat No. 1, Kota Bengkulu"
//! opening_hours_id = "Senin–Kamis 08.00–15.00 WIB, Jumat 08.00–11.30 WIB"
//! opening_hours_en = "Monday–Thursday 08:00–15:00 WIB, Friday 08:00–11:30 WIB"
//! phone = "(0736) 123456"
//! email = "mpp@bengkulukota.go.id"
//! complaint_url = "https://www.lapor.go.id"
//! logo_svg_file = "logo-1771.svg"   # optional, relative to this file
//! ```
//!
//! Every text is plain text (the page escapes it); URLs must be `https://`;
//! the logo is an SVG file of at most [`LOGO_SVG_BYTES_MAX`] bytes, shown as
//! an `<img>` from a `data:` URL, where SVG runs no script.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use mpp_core::RegionCode;
use serde::{Deserialize, Serialize};

/// Largest profiles file read, in bytes.
pub const PROFILES_FILE_BYTES_MAX: u64 = 256 * 1024;

/// Most profiles in one file (one per MPP of a province, with room).
pub const PROFILES_MAX: usize = 512;

/// Longest text of a profile (name, address, hours, contact), in bytes.
pub const PROFILE_TEXT_BYTES_MAX: usize = 200;

/// Largest logo file, in bytes.
pub const LOGO_SVG_BYTES_MAX: u64 = 32 * 1024;

/// The complaint channel when a profile names none: SP4N-LAPOR!, the
/// national complaint system every public service must connect to
/// (Perpres 76/2013).
pub const LAPOR_URL: &str = "https://www.lapor.go.id";

/// One MPP's profile as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MppProfile {
    /// Its name, e.g. "Mal Pelayanan Publik Kota Bengkulu".
    pub name: String,
    /// Street address.
    pub address: String,
    /// Opening hours in Bahasa Indonesia.
    pub opening_hours_id: String,
    /// Opening hours in English.
    pub opening_hours_en: String,
    /// Telephone (may be empty).
    pub phone: String,
    /// E-mail (may be empty).
    pub email: String,
    /// Where to complain: SP4N-LAPOR! ([`LAPOR_URL`]) unless the file names
    /// the MPP's own page on it.
    pub complaint_url: String,
    /// The logo as a `data:image/svg+xml;base64,` URL (empty: none).
    pub logo_data_url: String,
}

/// Every MPP's profile by region code.
#[derive(Debug, Clone, Default)]
pub struct MppProfiles {
    by_region: HashMap<RegionCode, MppProfile>,
}

/// Why a profiles file was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct ProfileError {
    /// The file.
    pub file: String,
    /// The profile (its region code, or its index), when one is at fault.
    pub profile: Option<String>,
    /// The field, when one is at fault.
    pub field: Option<&'static str>,
    /// What is wrong.
    pub detail: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = &self.profile {
            write!(f, ": MPP {p}")?;
        }
        if let Some(field) = self.field {
            write!(f, ", field {field}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for ProfileError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    mpp: Vec<RawProfile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    region_code: String,
    name: String,
    address: String,
    opening_hours_id: String,
    opening_hours_en: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    complaint_url: Option<String>,
    #[serde(default)]
    logo_svg_file: Option<String>,
}

impl MppProfiles {
    /// No profile: every page has the neutral header.
    pub fn none() -> Self {
        Self::default()
    }

    /// The profile of the MPP of `region`, if the file has one.
    pub fn get(&self, region: RegionCode) -> Option<&MppProfile> {
        self.by_region.get(&region)
    }

    /// How many profiles are loaded.
    pub fn len(&self) -> usize {
        self.by_region.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_region.is_empty()
    }

    /// Reads and checks the profiles file at `path` (logos relative to it).
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let file = path.display().to_string();
        let fail = |detail: String| ProfileError { file: file.clone(), profile: None, field: None, detail };
        let text = read_bounded(path, PROFILES_FILE_BYTES_MAX).map_err(fail)?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&file, &text, |logo| read_bounded(&dir.join(logo), LOGO_SVG_BYTES_MAX))
    }

    /// Parses a profiles file's text; `read_logo` reads a logo file named in it.
    pub fn parse(
        file: &str,
        text: &str,
        read_logo: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Self, ProfileError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ProfileError {
            file: file.to_owned(),
            profile: None,
            field: None,
            detail: format!("not a profiles file: {}", e.message()),
        })?;
        if raw.mpp.len() > PROFILES_MAX {
            return Err(ProfileError {
                file: file.to_owned(),
                profile: None,
                field: None,
                detail: format!("{} profiles; at most {PROFILES_MAX}", raw.mpp.len()),
            });
        }
        let mut by_region = HashMap::with_capacity(raw.mpp.len());
        for (i, r) in raw.mpp.into_iter().enumerate() {
            let at = |field: &'static str, detail: String| ProfileError {
                file: file.to_owned(),
                profile: Some(if r.region_code.is_empty() {
                    format!("#{}", i + 1)
                } else {
                    r.region_code.clone()
                }),
                field: Some(field),
                detail,
            };
            let region = RegionCode::parse(&r.region_code)
                .map_err(|_| at("region_code", "a BPS region code has 4 digits, e.g. 1771".to_owned()))?;
            for (field, value, required) in [
                ("name", &r.name, true),
                ("address", &r.address, true),
                ("opening_hours_id", &r.opening_hours_id, true),
                ("opening_hours_en", &r.opening_hours_en, true),
                ("phone", &r.phone, false),
                ("email", &r.email, false),
            ] {
                check_text(value, required).map_err(|d| at(field, d))?;
            }
            let complaint_url = match &r.complaint_url {
                None => LAPOR_URL.to_owned(),
                Some(u) => {
                    check_https(u).map_err(|d| at("complaint_url", d))?;
                    u.clone()
                }
            };
            let logo_data_url = match &r.logo_svg_file {
                None => String::new(),
                Some(name) => {
                    let svg = read_logo(name).map_err(|d| at("logo_svg_file", d))?;
                    if !svg.trim_start().starts_with("<svg") && !svg.trim_start().starts_with("<?xml") {
                        return Err(at("logo_svg_file", format!("{name} is not an SVG image")));
                    }
                    format!("data:image/svg+xml;base64,{}", mpp_core::base64::encode(svg.as_bytes()))
                }
            };
            let profile = MppProfile {
                name: r.name,
                address: r.address,
                opening_hours_id: r.opening_hours_id,
                opening_hours_en: r.opening_hours_en,
                phone: r.phone,
                email: r.email,
                complaint_url,
                logo_data_url,
            };
            if by_region.insert(region, profile).is_some() {
                return Err(at("region_code", format!("{region} has two profiles")));
            }
        }
        Ok(Self { by_region })
    }
}

fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    let bytes = mpp_edge::files::read_at_most(path, max)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    String::from_utf8(bytes).map_err(|_| format!("cannot read {}: it is not UTF-8 text", path.display()))
}

fn check_text(value: &str, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err("required".to_owned());
    }
    if value.len() > PROFILE_TEXT_BYTES_MAX {
        return Err(format!("{} bytes; at most {PROFILE_TEXT_BYTES_MAX}", value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err("holds a control character (one line of plain text)".to_owned());
    }
    Ok(())
}

fn check_https(url: &str) -> Result<(), String> {
    check_text(url, true)?;
    let ok = url.starts_with("https://")
        && url.len() > "https://".len()
        && url.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '\\'));
    if ok {
        Ok(())
    } else {
        Err("must be an https:// URL without spaces or quotes".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../../deploy/mpp-profiles.toml");

    fn parse(text: &str) -> Result<MppProfiles, ProfileError> {
        MppProfiles::parse("p.toml", text, |name| match name {
            "logo.svg" => Ok("<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_owned()),
            "not.svg" => Ok("GIF89a".to_owned()),
            other => Err(format!("cannot open {other}")),
        })
    }

    fn region(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    #[test]
    fn the_sample_in_deploy_parses() {
        let p = MppProfiles::parse("deploy/mpp-profiles.toml", SAMPLE, |_| {
            Ok(include_str!("../../../deploy/mpp-logo-1771.svg").to_owned())
        })
        .unwrap();
        let b = p.get(region("1771")).expect("Kota Bengkulu");
        assert!(b.name.contains("Bengkulu") && b.complaint_url.starts_with("https://"));
        assert!(b.logo_data_url.starts_with("data:image/svg+xml;base64,"));
        assert!(p.get(region("3171")).is_none(), "no profile: the neutral header");
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_profile_and_field() {
        let good = "[[mpp]]\nregion_code = \"1771\"\nname = \"MPP\"\naddress = \"Jl. A\"\n\
                    opening_hours_id = \"Senin\"\nopening_hours_en = \"Monday\"\n";
        let p = parse(good).unwrap();
        assert_eq!(p.get(region("1771")).unwrap().complaint_url, LAPOR_URL, "SP4N-LAPOR! by default");
        let cases: [(String, Option<&str>, &str); 7] = [
            (good.replace("1771", "17"), Some("region_code"), "4 digits"),
            (good.replace("name = \"MPP\"", "name = \" \""), Some("name"), "required"),
            (format!("{good}complaint_url = \"http://lapor.go.id\"\n"), Some("complaint_url"), "https://"),
            (format!("{good}logo_svg_file = \"not.svg\"\n"), Some("logo_svg_file"), "not an SVG"),
            (format!("{good}logo_svg_file = \"gone.svg\"\n"), Some("logo_svg_file"), "cannot open"),
            (format!("{good}{good}"), Some("region_code"), "two profiles"),
            (format!("{good}colour = \"red\"\n"), None, "unknown field"),
        ];
        for (text, field, says) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        let long = good.replace("Jl. A", &"x".repeat(PROFILE_TEXT_BYTES_MAX + 1));
        assert_eq!(parse(&long).unwrap_err().field, Some("address"));
        let logo = format!("{good}logo_svg_file = \"logo.svg\"\n");
        assert!(parse(&logo)
            .unwrap()
            .get(region("1771"))
            .unwrap()
            .logo_data_url
            .starts_with("data:image/svg+xml"));
    }
}
