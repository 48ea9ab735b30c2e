//! Synthetic citizens: a valid NIK of the MPP's region, a name and a phone
//! number, made up from the seed. None of them belongs to a real person; the
//! name and phone number only ever reach the front office's receipt.
//!
//! A NIK is 16 digits: province (2), regency/city (2), district (2), birth
//! date `DDMMYY` with the day + 40 for women, serial (4, never `0000`).

use std::fmt;

use crate::rng::Rng;

/// The districts (kecamatan) of Kota Bengkulu (1771), 01..=09: Selebar,
/// Gading Cempaka, Teluk Segara, Sungai Serut, Kampung Melayu, Muara Bangka
/// Hulu, Ratu Agung, Ratu Samban, Singaran Pati. Other regions use the same
/// count (the simulator does not know their real district lists).
pub const DISTRICTS: u64 = 9;

/// Earliest birth year of a synthetic adult citizen.
pub const BIRTH_YEAR_MIN: u64 = 1960;

/// Latest birth year of a synthetic adult citizen (adults only: a KTP-el
/// holder is at least 17).
pub const BIRTH_YEAR_MAX: u64 = 2006;

const GIVEN_FEMALE: &[&str] = &[
    "Siti",
    "Dewi",
    "Rina",
    "Nur",
    "Sri",
    "Ayu",
    "Putri",
    "Rahmawati",
    "Fitri",
    "Yulia",
    "Maya",
    "Wulan",
    "Indah",
    "Lestari",
    "Novita",
    "Ratna",
];
const GIVEN_MALE: &[&str] = &[
    "Ahmad", "Budi", "Rudi", "Agus", "Hendra", "Joko", "Dedi", "Fajar", "Rizki", "Andi", "Eko", "Bayu",
    "Yusuf", "Hari", "Teguh", "Arif",
];
const FAMILY: &[&str] = &[
    "Santoso",
    "Pratama",
    "Saputra",
    "Hidayat",
    "Siregar",
    "Wijaya",
    "Kurniawan",
    "Susanti",
    "Marlina",
    "Harahap",
    "Nasution",
    "Rahman",
    "Syahputra",
    "Lubis",
    "Permata",
    "Anggraini",
];
/// Mobile prefixes of Indonesian operators (after the leading 0).
const MOBILE_PREFIXES: &[&str] = &["811", "812", "813", "821", "822", "852", "853", "877", "878", "895"];

/// A synthetic citizen. `Debug` hides the NIK, name and phone number, like
/// every type that may carry personal data in this project.
#[derive(Clone, PartialEq, Eq)]
pub struct Citizen {
    /// The NIK, 16 digits.
    pub nik: String,
    /// The name, printed on the receipt only.
    pub nama: String,
    /// The mobile number, e.g. `0812-3456-7890`.
    pub telepon: String,
    /// Whether the citizen is a woman (her NIK's day is + 40).
    pub female: bool,
}

impl fmt::Debug for Citizen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Citizen").field("female", &self.female).finish_non_exhaustive()
    }
}

/// Days in `month` (1..=12) of `year`.
pub fn days_in_month(year: u64, month: u64) -> u64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A valid NIK of `region` (4 digits, e.g. `1771`): a district of
/// 01..=[`DISTRICTS`], the birth date (`day` + 40 when `female`) and a
/// serial of 0001..=9999. `year`, `month` and `day` must form a real date.
pub fn nik(
    region: &str,
    district: u64,
    (year, month, day): (u64, u64, u64),
    female: bool,
    serial: u64,
) -> String {
    let dd = if female { day + 40 } else { day };
    format!("{region}{district:02}{dd:02}{month:02}{:02}{serial:04}", year % 100)
}

impl Citizen {
    /// A random adult citizen of `region` (4 digits).
    pub fn random(region: &str, rng: &mut Rng) -> Self {
        let female = rng.chance(50);
        let year = rng.range(BIRTH_YEAR_MIN, BIRTH_YEAR_MAX);
        let month = rng.range(1, 12);
        let day = rng.range(1, days_in_month(year, month));
        let district = rng.range(1, DISTRICTS);
        let serial = rng.range(1, 9999);
        let given = if female { rng.pick(GIVEN_FEMALE) } else { rng.pick(GIVEN_MALE) };
        let nama = format!("{given} {}", rng.pick(FAMILY));
        let telepon = format!("0{}-{}-{}", rng.pick(MOBILE_PREFIXES), rng.digits(4), rng.digits(4));
        Self { nik: nik(region, district, (year, month, day), female, serial), nama, telepon, female }
    }
}

#[cfg(test)]
mod tests {
    use mpp_core::ids::Nik;

    use super::*;

    #[test]
    fn nik_layout_and_the_plus_40_rule() {
        assert_eq!(nik("1771", 1, (1990, 1, 5), false, 1), "1771010501900001");
        assert_eq!(nik("1771", 1, (1990, 1, 5), true, 1), "1771014501900001");
        assert_eq!(nik("1771", 9, (2000, 2, 29), true, 9999), "1771096902009999");
        for s in ["1771010501900001", "1771014501900001", "1771096902009999"] {
            assert!(Nik::parse(s).is_ok(), "{s}");
        }
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2023, 4), 30);
    }

    #[test]
    fn every_random_citizen_has_a_nik_the_hub_accepts_and_a_receipt_ready_name_and_phone() {
        let mut rng = Rng::new(42);
        let mut women = 0;
        for _ in 0..5_000 {
            let c = Citizen::random("1771", &mut rng);
            assert!(Nik::parse(&c.nik).is_ok(), "generated an invalid NIK");
            assert!(c.nik.starts_with("1771"));
            let day: u32 = c.nik[6..8].parse().unwrap();
            assert_eq!(day > 40, c.female, "the +40 rule");
            if c.female {
                women += 1;
            }
            assert!(!c.nama.trim().is_empty() && c.nama.is_ascii());
            let digits = c.telepon.bytes().filter(u8::is_ascii_digit).count();
            assert!((8..=15).contains(&digits), "{digits}");
            assert!(!format!("{c:?}").contains(&c.nik), "Debug must not show the NIK");
        }
        assert!((2_000..3_000).contains(&women), "{women} women in 5000");
    }
}
