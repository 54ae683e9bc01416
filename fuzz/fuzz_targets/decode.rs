//! Fuzz target: request decoding and validation (`tucano_auth::request::decode`).
//!
//! The input is a selector byte for the `content_type` property followed by the body
//! (`tucano_auth_fuzz::input`); the invariants are in `tucano_auth_fuzz::check`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tucano_auth_fuzz::check(data);
});
