//! The base62 alphabet shared by keys and identifiers: `0-9A-Za-z`, in that order.

/// The 62 characters, in ascending value order.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Whether `b` is one of the 62 characters.
pub fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Writes `value` as a big-endian base62 number, left-padded with `0` to `width` characters.
///
/// `width` must be large enough for the value (6 characters hold any `u32`).
pub fn encode_padded(mut value: u64, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    debug_assert_eq!(value, 0, "value does not fit in {width} base62 digits");
    // Every byte comes from ALPHABET, so this is ASCII.
    String::from_utf8(digits).unwrap_or_default()
}

/// Appends `len` characters drawn uniformly from the alphabet by `rng`.
///
/// `random_range` rejects out-of-range draws instead of reducing modulo 62, so there is no bias.
pub fn push_random<R: rand::Rng + ?Sized>(out: &mut String, rng: &mut R, len: usize) {
    for _ in 0..len {
        out.push(ALPHABET[rng.random_range(0..62usize)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_big_endian_with_padding() {
        assert_eq!(encode_padded(0, 6), "000000");
        assert_eq!(encode_padded(61, 6), "00000z");
        assert_eq!(encode_padded(62, 6), "000010");
        assert_eq!(encode_padded(u32::MAX as u64, 6), "4gfFC3");
    }
}
