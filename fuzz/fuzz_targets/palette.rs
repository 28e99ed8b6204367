//! Fuzzes palette files (.npy or preprocessor_config.json): see `igpt::fuzzing::fuzz_palette` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    igpt::fuzzing::fuzz_palette(data);
});
