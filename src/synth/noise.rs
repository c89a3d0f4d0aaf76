//! Hashing and value noise: the only source of per-pixel randomness in phantoms.
//!
//! Every texture is a pure function of micrometre coordinates and a salt, so any band
//! or tile renders the same whatever order or thread it is rendered in. No state here.

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of an integer lattice point and a salt.
#[inline]
pub fn hash2(i: i64, j: i64, salt: u64) -> u64 {
    mix((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ mix((j as u64) ^ salt))
}

/// The `k`-th 16-bit field of a hash as a number in [0, 1).
#[inline]
pub fn unit(h: u64, k: u32) -> f32 {
    ((h >> (16 * (k % 4))) & 0xFFFF) as f32 / 65536.0
}

#[inline]
fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Smooth value noise in [0, 1] with unit lattice spacing.
#[inline]
pub fn value(x: f32, y: f32, salt: u64) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (i, j) = (fx as i64, fy as i64);
    let (tx, ty) = (smooth(x - fx), smooth(y - fy));
    // hash2 with the row's half of the hash computed once per row (same values).
    let (r0, r1) = (mix((j as u64) ^ salt), mix(((j + 1) as u64) ^ salt));
    let v = |a: i64, row: u64| unit(mix((a as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ row), 0);
    let (a, b) = (v(i, r0), v(i + 1, r0));
    let (c, d) = (v(i, r1), v(i + 1, r1));
    let top = a + (b - a) * tx;
    let bottom = c + (d - c) * tx;
    top + (bottom - top) * ty
}

/// Two octaves of value noise, in [0, 1].
#[inline]
pub fn fbm2(x: f32, y: f32, salt: u64) -> f32 {
    (value(x, y, salt) * 0.65 + value(x * 2.03 + 17.1, y * 2.03 + 5.3, salt ^ 0x55) * 0.35)
        .clamp(0.0, 1.0)
}

#[inline]
pub fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_noise_is_bounded_and_continuous() {
        for k in 0..2000 {
            let x = k as f32 * 0.137;
            let y = k as f32 * 0.071;
            let a = value(x, y, 7);
            let b = value(x + 1e-3, y, 7);
            assert!((0.0..=1.0).contains(&a));
            assert!((a - b).abs() < 0.01);
        }
    }

    #[test]
    fn value_noise_matches_its_lattice_hashes() {
        for k in 0..500 {
            let (x, y) = (k as f32 * 0.731 - 40.0, k as f32 * 0.377 - 20.0);
            let (i, j) = (x.floor() as i64, y.floor() as i64);
            let (tx, ty) = (smooth(x - x.floor()), smooth(y - y.floor()));
            let v = |a: i64, b: i64| unit(hash2(a, b, 9), 0);
            let top = v(i, j) + (v(i + 1, j) - v(i, j)) * tx;
            let bottom = v(i, j + 1) + (v(i + 1, j + 1) - v(i, j + 1)) * tx;
            assert_eq!(value(x, y, 9), top + (bottom - top) * ty);
        }
    }

    #[test]
    fn unit_fields_are_in_range() {
        for k in 0..100u64 {
            let h = mix(k);
            for f in 0..4 {
                let u = unit(h, f);
                assert!((0.0..1.0).contains(&u));
            }
        }
    }
}
