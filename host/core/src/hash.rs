//! Content hashes (blake3) as Orbital names them: in hex when shown, and
//! short (12 hex digits) in relation names and summaries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A blake3 hash of some content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

/// The bytes' order, compared eight at a time: the first eight nearly
/// always differ, and a tree of 10k builds is searched 10k times a plan
/// (byte-wise, each comparison was a call to `memcmp`).
impl Ord for Hash {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let words = |hash: &Self| {
            let word = |i: usize| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&hash.0[i * 8..i * 8 + 8]);
                u64::from_be_bytes(bytes)
            };
            [word(0), word(1), word(2), word(3)]
        };
        words(self).cmp(&words(other))
    }
}

impl PartialOrd for Hash {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The first 12 hex digits: what relation names and summaries show.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// The 64 hex digits, without formatting machinery (a plan of 10k
    /// models prints 10k of them).
    fn hex(&self) -> HexDigits {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        HexDigits(out)
    }
}

/// A hash's hex digits, on the stack.
struct HexDigits([u8; 64]);

impl std::ops::Deref for HexDigits {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

impl FromStr for Hash {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a 64-digit hex hash");
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

/// Builds a hash from length-prefixed fields, so that no two different field
/// lists can produce the same byte stream.
#[derive(Clone)]
pub struct Hasher(blake3::Hasher);

impl Hasher {
    /// A hasher for one purpose; the purpose string separates domains.
    pub fn new(purpose: &str) -> Self {
        Self(blake3::Hasher::new_derive_key(purpose))
    }

    pub fn field(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let bytes = bytes.as_ref();
        let length = (bytes.len() as u64).to_le_bytes();
        // A short field (a hash, a name) goes in one update: an update
        // costs about as much as hashing such a field's bytes.
        const SHORT: usize = 64;
        if bytes.len() <= SHORT {
            let mut field = [0u8; 8 + SHORT];
            field[..8].copy_from_slice(&length);
            field[8..8 + bytes.len()].copy_from_slice(bytes);
            self.0.update(&field[..8 + bytes.len()]);
        } else {
            self.0.update(&length);
            self.0.update(bytes);
        }
        self
    }

    pub fn finish(&self) -> Hash {
        Hash(*self.0.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_hash_as_length_then_bytes_whatever_their_size() {
        // Stored fingerprints depend on these bytes: a short field's one
        // update must equal the length's and the bytes' own.
        let long = vec![7u8; 200];
        let mut reference = blake3::Hasher::new_derive_key("t");
        for field in [
            &b"name"[..],
            &[][..],
            &long[..],
            &[1u8; 64][..],
            &[2u8; 65][..],
        ] {
            reference.update(&(field.len() as u64).to_le_bytes());
            reference.update(field);
        }
        let mut hasher = Hasher::new("t");
        hasher.field("name").field([]).field(&long);
        hasher.field([1u8; 64]).field([2u8; 65]);
        assert_eq!(hasher.finish(), Hash(*reference.finalize().as_bytes()));
    }

    #[test]
    fn hashes_order_as_their_bytes() {
        let mut hashes: Vec<Hash> = (0u32..2000).map(|i| Hash::of(&i.to_le_bytes())).collect();
        let mut by_bytes = hashes.clone();
        by_bytes.sort_by_key(|hash| hash.0);
        hashes.sort();
        assert_eq!(hashes, by_bytes);
        // Equal leading words: the later ones decide.
        let (mut a, mut b) = (Hash([7; 32]), Hash([7; 32]));
        a.0[31] = 1;
        b.0[31] = 2;
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Less);
        assert_eq!(b.cmp(&a), std::cmp::Ordering::Greater);
        assert!(a.cmp(&a).is_eq());
    }

    #[test]
    fn hex_round_trips() {
        let hash = Hash::of(b"orbital");
        assert_eq!(hash.to_string().parse::<Hash>().unwrap(), hash);
        assert_eq!(hash.short().len(), 12);
        assert_eq!(
            Hash::of(b"").to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            serde_json::to_string(&Hash::of(b"")).unwrap(),
            "\"af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262\""
        );
        assert!("xyz".parse::<Hash>().is_err());
    }

    #[test]
    fn fields_are_length_prefixed() {
        let a = Hasher::new("t").field("ab").field("c").finish();
        let b = Hasher::new("t").field("a").field("bc").finish();
        assert_ne!(a, b);
    }
}
