//! Fuzzes igpt's gzip decoder: see `igpt::io::fuzzing::fuzz_gzip` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    igpt::io::fuzzing::fuzz_gzip(data);
});
