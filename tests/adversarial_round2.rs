//! Adversarial tests, round two (2026-12-02): today's changes attacked over real HTTP on
//! 127.0.0.1. The request path (the Vault's authority compared byte for byte before
//! case-folding, `Host` and `Authorization` found by a walk over at most 8 header names,
//! `SUCCESS` compared exactly first, http/https kept by name in the replay copy); the bulk wipes
//! of a recorded body; the issuer over https against hostile servers. `held_*` tests are attacks
//! that held (each fails if the behaviour it checks breaks); `fixed_*` tests are the two bugs the
//! round found in the issuer's `Date` probe, which failed before their fix.

mod common;
mod issuer_common;
mod round2;
mod scanning;
