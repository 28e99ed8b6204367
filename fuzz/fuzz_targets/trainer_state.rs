//! Fuzzes the trainer_state.safetensors (resume) reader: see `igpt::fuzzing::fuzz_trainer_state` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    igpt::fuzzing::fuzz_trainer_state(data);
});
