//! Fuzzes PNG/JPEG decoding (RGB and RGBA, with igpt's size limits): see `igpt::fuzzing::fuzz_image` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    igpt::fuzzing::fuzz_image(data);
});
