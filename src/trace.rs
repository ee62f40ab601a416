//! Logging through `tracing` when the `tracing` feature is on, and nothing at all when it is off.
//!
//! Events carry generations, expiries, counts and error messages; never a token's value (no
//! `AccessToken` has a `Display`, and its `Debug` is redacted, so one cannot slip in by accident).

/// `event!(level, fields…, "message")`: a `tracing` event with target `veeva_vault_auth`, compiled
/// out without the feature (its arguments are then not evaluated).
macro_rules! event {
    ($level:ident, $($rest:tt)+) => {{
        #[cfg(feature = "tracing")]
        {
            tracing::$level!(target: "veeva_vault_auth", $($rest)+);
        }
    }};
}

pub(crate) use event;
