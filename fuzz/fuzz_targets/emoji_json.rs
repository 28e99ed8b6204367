//! Fuzzes the emoji package's emoji.json reader: see `igpt::fuzzing::fuzz_emoji_json` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    igpt::fuzzing::fuzz_emoji_json(data);
});
