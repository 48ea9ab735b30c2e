//! The receipt (tanda terima) printed at the counter when a case is opened,
//! in Bahasa Indonesia and English.
//!
//! The receipt is the only place the citizen's name, phone number and PIN
//! appear: it is returned to the caller and kept nowhere.

use mpp_agency_kit::Pin;
use mpp_core::ids::{OfficerId, TrackingNumber};

/// Default of `--lookup-base-url`: the hub's tracking page on the local stack.
pub const LOOKUP_BASE_URL_DEFAULT: &str = "http://127.0.0.1:8080/lacak";

/// Longest `--lookup-base-url`, in bytes.
pub const LOOKUP_BASE_URL_BYTES_MAX: usize = 200;

/// Longest `--mpp-name`, in bytes.
pub const MPP_NAME_BYTES_MAX: usize = 100;

/// The hub's JSON case lookup, appended to the origin of the lookup URL.
pub const CASE_API_PATH: &str = "/api/v1/cases/";

/// Where a citizen looks a case up: the tracking page (`--lookup-base-url`)
/// and, on the same origin, the JSON API `/api/v1/cases/<tracking number>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupUrl {
    page: String,
    origin: String,
}

impl LookupUrl {
    /// Parses an `http://` or `https://` URL with a host, at most
    /// [`LOOKUP_BASE_URL_BYTES_MAX`] bytes, without spaces, query or
    /// fragment. A trailing `/` is dropped.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("lookup base URL {why}, e.g. {LOOKUP_BASE_URL_DEFAULT}");
        if s.len() > LOOKUP_BASE_URL_BYTES_MAX {
            return Err(bad(&format!("must be at most {LOOKUP_BASE_URL_BYTES_MAX} bytes")));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("must be printable ASCII without spaces"));
        }
        if s.contains(['?', '#']) {
            return Err(bad("must have no query or fragment"));
        }
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("must start with http:// or https://"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad("must start with http:// or https://"));
        }
        let host_len = rest.find('/').unwrap_or(rest.len());
        if host_len == 0 || rest[..host_len].contains('@') {
            return Err(bad("must name a host (and no user)"));
        }
        let page = s.trim_end_matches('/').to_owned();
        let origin = format!("{scheme}://{}", &rest[..host_len]);
        Ok(Self { page, origin })
    }

    /// The tracking page.
    pub fn page(&self) -> &str {
        &self.page
    }

    /// The JSON lookup of `tracking`.
    pub fn case_api(&self, tracking: &TrackingNumber) -> String {
        format!("{}{CASE_API_PATH}{tracking}", self.origin)
    }
}

/// Checks `--mpp-name`: 1..=[`MPP_NAME_BYTES_MAX`] bytes, one line.
pub fn parse_mpp_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.len() > MPP_NAME_BYTES_MAX || s.chars().any(char::is_control) {
        return Err(format!("MPP name must be one line of 1..={MPP_NAME_BYTES_MAX} bytes"));
    }
    Ok(s.to_owned())
}

/// What every receipt of one front office shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptConfig {
    /// The MPP's name as printed, e.g. `MPP Kota Bengkulu`.
    pub mpp_name: String,
    /// Where to look the case up.
    pub lookup: LookupUrl,
}

/// One receipt's contents.
#[derive(Debug)]
pub struct Receipt<'a> {
    /// The new case.
    pub tracking: &'a TrackingNumber,
    /// The citizen's PIN.
    pub pin: &'a Pin,
    /// The citizen's name; empty on a re-issued PIN's receipt, which prints none.
    pub nama: &'a str,
    /// The citizen's phone number, if given.
    pub telepon: Option<&'a str>,
    /// The officer at the counter.
    pub officer: &'a OfficerId,
}

impl ReceiptConfig {
    /// The receipt's lines, to print one per line.
    pub fn lines(&self, r: &Receipt<'_>) -> Vec<String> {
        let mut lines = vec![
            self.mpp_name.clone(),
            "TANDA TERIMA PEMBUKAAN BERKAS / CASE RECEIPT".to_owned(),
            format!("Nomor berkas / Tracking number: {}", r.tracking),
            format!("PIN: {}", r.pin.grouped()),
        ];
        if !r.nama.is_empty() {
            lines.push(format!("Nama / Name: {}", r.nama));
        }
        if let Some(t) = r.telepon {
            lines.push(format!("Telepon / Phone: {t}"));
        }
        lines.extend([
            format!("Petugas / Officer: {}", r.officer),
            "Tunjukkan nomor berkas ini di setiap loket instansi. / Show this tracking number at every \
             agency counter."
                .to_owned(),
            "Simpan PIN ini, jangan berikan kepada siapa pun. / Keep this PIN; do not share it with anyone."
                .to_owned(),
            format!("Cek status berkas / Check the case status: {}", self.lookup.page()),
            "Masukkan nomor berkas dan PIN. / Enter the tracking number and PIN.".to_owned(),
            format!("API: {}", self.lookup.case_api(r.tracking)),
        ]);
        lines
    }
}

#[cfg(test)]
mod tests {
    use mpp_core::ids::RegionCode;

    use super::*;

    #[test]
    fn lookup_urls() {
        let u = LookupUrl::parse("http://127.0.0.1:8080/lacak/").unwrap();
        assert_eq!(u.page(), "http://127.0.0.1:8080/lacak");
        let t = TrackingNumber::new(RegionCode::parse("1771").unwrap(), 42).unwrap();
        assert_eq!(u.case_api(&t), format!("http://127.0.0.1:8080/api/v1/cases/{t}"));
        let u = LookupUrl::parse("https://mpp.bengkulukota.go.id").unwrap();
        assert_eq!(u.case_api(&t), format!("https://mpp.bengkulukota.go.id/api/v1/cases/{t}"));
        assert!(LookupUrl::parse(LOOKUP_BASE_URL_DEFAULT).is_ok());
        for bad in [
            "",
            "127.0.0.1:8080",
            "ftp://host/x",
            "http:///lacak",
            "http://host/a b",
            "http://host/?q=1",
            "http://user@host/",
            "http://host/\u{e9}",
        ] {
            assert!(LookupUrl::parse(bad).is_err(), "{bad}");
        }
        let long = format!("http://h/{}", "a".repeat(LOOKUP_BASE_URL_BYTES_MAX));
        assert!(LookupUrl::parse(&long).is_err());
    }

    #[test]
    fn mpp_names() {
        assert_eq!(parse_mpp_name(" MPP Kota Bengkulu ").unwrap(), "MPP Kota Bengkulu");
        assert!(parse_mpp_name("").is_err());
        assert!(parse_mpp_name("a\nb").is_err());
        assert!(parse_mpp_name(&"a".repeat(MPP_NAME_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn receipt_lines_carry_everything_the_citizen_needs() {
        let cfg = ReceiptConfig {
            mpp_name: "MPP Kota Bengkulu".into(),
            lookup: LookupUrl::parse("http://127.0.0.1:8080/lacak").unwrap(),
        };
        let t = TrackingNumber::new(RegionCode::parse("1771").unwrap(), 42).unwrap();
        let pin = Pin::parse("K7MR2X9QH").unwrap();
        let officer = OfficerId::parse("ptg-07").unwrap();
        let r = Receipt { tracking: &t, pin: &pin, nama: "Siti Aminah", telepon: None, officer: &officer };
        let lines = cfg.lines(&r);
        let text = lines.join("\n");
        for want in [
            "MPP Kota Bengkulu",
            &format!("Nomor berkas / Tracking number: {t}"),
            "PIN: K7M-R2X-9QH",
            "Nama / Name: Siti Aminah",
            "Petugas / Officer: ptg-07",
            "Cek status berkas / Check the case status: http://127.0.0.1:8080/lacak",
            &format!("API: http://127.0.0.1:8080/api/v1/cases/{t}"),
        ] {
            assert!(lines.iter().any(|l| l == want), "{want:?} missing from:\n{text}");
        }
        assert!(!text.contains("Telepon"), "no phone line without a phone");
        let with_phone = cfg.lines(&Receipt { telepon: Some("0812-3456-7890"), ..r });
        assert!(with_phone.iter().any(|l| l == "Telepon / Phone: 0812-3456-7890"));
        assert_eq!(with_phone.len(), lines.len() + 1);
        assert!(lines.iter().all(|l| !l.contains('\n')), "one line per entry");
    }
}
