//! Fuzzes a model directory (config.json, NUL, model.safetensors): see `igpt::fuzzing::fuzz_model_dir` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    igpt::fuzzing::fuzz_model_dir(data);
});
