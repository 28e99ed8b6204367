//! The token: what one pixel is between the palette and the model.
//!
//! A token is the index of a palette colour (`0..K`) or the start-of-sequence id `K` that the
//! model is fed before the first pixel. One integer type carries it the whole way — quantize
//! (`palette`), the token data sets (`data::ImageSet`), the model's input (`model::TokenBatch`,
//! the KV-cache decoder), sampling and completion (`sample`) — so no step silently narrows it.
//!
//! **Why `u32`.** A model's vocabulary may hold up to 2²⁰ ids (`model::config` bounds
//! `vocab_size` so that the sizes derived from it cannot overflow, and checks at compile time
//! that every id fits this type). The paper's 512 colours + SOS would fit `u16`, a larger palette
//! would not; `u32` holds every valid id at 4 bytes a token (half of `usize`).
//!
//! **Boundaries.** Files keep their own integer type: token `.npy` files and golden tensors are
//! int64 (int32 accepted when reading), converted and range-checked where they are read
//! (`model::TokenBatch::from_i64`) and written (`model::TokenBatch::to_npy`). The differentiable
//! ops index their tables with `usize` (positions and class labels too), so the model widens a
//! token where it looks a row up.

/// One token id: a palette index, or the start-of-sequence id (see the module doc).
pub type Token = u32;
