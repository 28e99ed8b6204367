//! Fuzzes the CIFAR-10 binary batch reader: see `igpt::fuzzing::fuzz_cifar` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    igpt::fuzzing::fuzz_cifar(data);
});
