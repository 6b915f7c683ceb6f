//! Any text handed to `pit::spec::parse` gets back a `Spec` or a `SpecError`; it never
//! panics. This covers the TOML front end, the unit parsers (sizes, durations, modes), the
//! validation and support rules, and `locate`, which turns serde's byte spans into
//! line:column and key paths (slicing text at spans other code produced).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `parse` takes `&str`: a spec that is not UTF-8 is refused by `load` before parsing,
    // so only valid UTF-8 reaches the code under test.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = pit::spec::parse(text, Path::new("fuzz.toml")) {
        // Rendering the message is part of the contract too (`pitd --check` prints it).
        let _ = err.to_string();
    }
});
