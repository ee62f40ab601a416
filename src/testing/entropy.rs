//! Random-looking values without the rand crate.

use super::*;

/// Hashes a counter with randomly keyed SipHash: unpredictable enough for a test utility.
#[derive(Default)]
pub(super) struct Entropy {
    pub(super) keys: RandomState,
    pub(super) counter: AtomicU64,
}

impl Entropy {
    pub(super) fn next_u64(&self) -> u64 {
        let mut hasher = self.keys.build_hasher();
        hasher.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        hasher.finish()
    }

    /// `veeva-vault-` followed by 32 characters from `[A-Za-z0-9]`.
    pub(super) fn token_value(&self) -> String {
        const ALPHABET: &[u8; 62] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut value = String::with_capacity(TOKEN_PREFIX.len() + TOKEN_RANDOM_CHARS);
        value.push_str(TOKEN_PREFIX);
        let mut chars = 0;
        while chars < TOKEN_RANDOM_CHARS {
            // 62^10 < 2^64: ten characters per hash.
            let mut bits = self.next_u64();
            for _ in 0..10.min(TOKEN_RANDOM_CHARS - chars) {
                value.push(char::from(ALPHABET[(bits % 62) as usize]));
                bits /= 62;
                chars += 1;
            }
        }
        value
    }

    /// A session id: 64 upper-case hex digits, built at run time.
    pub(super) fn session_id(&self) -> String {
        (0..4)
            .map(|_| format!("{:016X}", self.next_u64()))
            .collect()
    }

    /// A UUID-shaped identifier for `X-VaultAPI-ExecutionId`.
    pub(super) fn execution_id(&self) -> String {
        let (high, low) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xffff,
            low >> 48,
            low & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_have_the_vault_shape() {
        let entropy = Entropy::default();
        let value = entropy.token_value();
        let random = value.strip_prefix(TOKEN_PREFIX).unwrap();
        assert_eq!(random.len(), TOKEN_RANDOM_CHARS);
        assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(value, entropy.token_value());
    }
}
