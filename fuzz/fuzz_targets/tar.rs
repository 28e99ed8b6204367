//! Fuzzes igpt's tar reader: see `igpt::io::fuzzing::fuzz_tar` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    igpt::io::fuzzing::fuzz_tar(data);
});
