//! Reading the small files a hub or agency service is configured with
//! (keys, peppers, tokens, certificates, catalogues) without trusting their
//! size: one bounded read for every such file on both sides of the edge.

use std::io::Read as _;
use std::path::Path;

/// Reads the file at `path`, but no more than `max + 1` bytes: one more than
/// a valid file may hold, so the caller can tell a file that is too large
/// without reading it all (a wrong path to a huge file fails fast).
pub fn read_at_most(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_byte_more_than_max_at_the_most() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_at_most(&path, 20).unwrap(), b"0123456789");
        assert_eq!(read_at_most(&path, 10).unwrap(), b"0123456789");
        assert_eq!(read_at_most(&path, 4).unwrap(), b"01234");
        let missing = read_at_most(&dir.path().join("missing"), 4).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }
}
