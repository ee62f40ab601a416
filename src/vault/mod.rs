//! The one Vault a layer serves: its origin, the layer's binding to it (settings and admission),
//! keeping its tokens off other hosts, and recognising its rejections.

pub(crate) mod binding;
pub mod detect;
pub(crate) mod origin;
pub(crate) mod strip;
