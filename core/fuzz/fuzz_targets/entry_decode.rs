//! Fuzz `Entry::decode`: it must never panic on any input, and whatever it accepts must be the
//! canonical encoding (re-encoding gives back the same bytes, `validate` agrees, and
//! `peek_header` reads the same header).
#![no_main]

use karlton_core::entry::{Entry, peek_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peek = peek_header(data);
    match Entry::decode(data) {
        Ok(entry) => {
            let bytes = entry.encode();
            assert_eq!(bytes, data, "decode accepted a non-canonical encoding");
            assert_eq!(entry.encoded_len(), data.len());
            assert_eq!(entry.validate(), Ok(()));
            let header = peek.expect("peek_header failed where decode succeeded");
            assert_eq!(header.soft_at, entry.soft_at);
            assert_eq!(header.hard_at, entry.hard_at);
            assert_eq!(header.version, entry.version);
            assert_eq!(header.negative, entry.negative);
        }
        Err(err) => {
            if let Err(peek_err) = peek {
                assert_eq!(peek_err, err, "peek_header and decode disagree");
            }
        }
    }
});
