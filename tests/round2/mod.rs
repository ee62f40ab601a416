//! The parts of tests/adversarial_round2.rs, one attack surface each.

pub mod answers;
pub mod hostile_tls;
pub mod issuer_hostile;
pub mod origin;
pub mod pinned;
pub mod raw;
pub mod replays;
pub mod reqwest_door;
pub mod wipes;
