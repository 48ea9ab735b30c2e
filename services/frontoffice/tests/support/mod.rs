//! What the front office's integration tests share: the flags of a test
//! instance.

use std::path::PathBuf;

use mpp_agency_kit::CommonArgs;
use mpp_frontoffice::receipt::LookupUrl;
use mpp_frontoffice::FrontOfficeArgs;

/// The kit's flags of region 1771 on a free port, unauthenticated
/// (`--insecure-no-auth`); tests that check tokens override two fields.
pub(crate) fn common(nats_url: String, data_dir: PathBuf) -> CommonArgs {
    mpp_agency_kit::testing::common_args(nats_url, data_dir)
}

/// The front office's flags, with the default per-client limits, without
/// `--insecure-dev-keys`. With a NIK key file, a vault key file and a PIN
/// pepper file beside it (written if missing); without, none (the
/// development keys, or a refusal to start).
pub(crate) fn front(nik_key_file: Option<PathBuf>) -> FrontOfficeArgs {
    let vault_key_file = nik_key_file.as_ref().map(|nik| {
        let path = nik.with_file_name("vault.key");
        if !path.exists() {
            std::fs::write(&path, "5a".repeat(32)).unwrap();
        }
        path
    });
    let pin_pepper_file = nik_key_file.as_ref().map(|nik| {
        let path = nik.with_file_name("pin-pepper");
        if !path.exists() {
            std::fs::write(&path, "integration-test-pepper-0123\n").unwrap();
        }
        path
    });
    FrontOfficeArgs {
        pin_pepper_file,
        insecure_dev_keys: false,
        nik_key_file,
        vault_key_file,
        lookup_base_url: LookupUrl::parse("http://127.0.0.1:8080/lacak").unwrap(),
        mpp_name: Some("MPP Kota Bengkulu".into()),
        serial_range_start: 1,
        serial_range_end: 5_000_000_000,
        serial_key_file: None,
        personal_data_reads_per_minute: 30,
        personal_data_reads_burst: 20,
        personal_data_erasures_per_minute: 2,
        personal_data_erasures_burst: 3,
        walk_ins_per_minute: 60,
        walk_ins_burst: 30,
        notify: mpp_frontoffice::notify::NotifyArgs::off(),
    }
}
