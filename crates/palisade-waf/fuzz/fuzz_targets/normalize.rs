//! Every view of arbitrary bytes: no panic, no growth.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_waf::normalize::{base64_text, cmd, collapse_path, compact, norm, strip, url_decode};

fuzz_target!(|data: &[u8]| {
    let n = norm(data);
    assert!(n.len() <= data.len());
    assert!(compact(&n).len() <= n.len());
    assert!(strip(&n).len() <= n.len());
    assert!(cmd(&n).len() <= n.len());
    assert!(collapse_path(&n).len() <= n.len() + 1);
    assert!(url_decode(data, true).len() <= data.len());
    if let Some(d) = base64_text(data) {
        assert!(d.len() <= data.len());
    }
});
