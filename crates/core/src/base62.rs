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
pub fn encode_padded(value: u64, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    encode_padded_into(value, &mut digits);
    // Every byte comes from ALPHABET, so this is ASCII.
    String::from_utf8(digits).unwrap_or_default()
}

/// [`encode_padded`] into `digits` (its length is the width): no allocation, for checks on
/// every request.
pub fn encode_padded_into(mut value: u64, digits: &mut [u8]) {
    for slot in digits.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    debug_assert_eq!(
        value,
        0,
        "value does not fit in {} base62 digits",
        digits.len()
    );
}

/// Appends `len` characters drawn uniformly from the alphabet by `rng`.
///
/// Rejection sampling: a random byte below 248 (= 4 × 62) is reduced modulo 62, anything
/// above is drawn again, so each character is exactly equally likely (no modulo bias).
pub fn push_random<R: rand::Rng + ?Sized>(out: &mut String, rng: &mut R, len: usize) {
    let mut pushed = 0;
    while pushed < len {
        let byte: u8 = rng.random();
        if byte < 248 {
            out.push(ALPHABET[usize::from(byte % 62)] as char);
            pushed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_character_about_equally() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut s = String::new();
        push_random(&mut s, &mut rng, 62 * 2000);
        let mut counts = [0u32; 62];
        for b in s.bytes() {
            counts[ALPHABET.iter().position(|a| *a == b).unwrap()] += 1;
        }
        // Each of 62 characters is expected 2000 times; 5 standard deviations is about ±220.
        assert!(
            counts.iter().all(|c| (1780..=2220).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn encodes_big_endian_with_padding() {
        assert_eq!(encode_padded(0, 6), "000000");
        assert_eq!(encode_padded(61, 6), "00000z");
        assert_eq!(encode_padded(62, 6), "000010");
        assert_eq!(encode_padded(u32::MAX as u64, 6), "4gfFC3");
    }
}
