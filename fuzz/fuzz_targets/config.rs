//! Fuzzes igpt's config.json reader: see `igpt::fuzzing::fuzz_config` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    igpt::fuzzing::fuzz_config(data);
});
