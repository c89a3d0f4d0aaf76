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

/// `x.floor() as i64` without a library call (the baseline x86-64 build has no
/// rounding instruction): truncation rounds negative values up, so step down
/// where it did. `floor_i64(x) as f32` is `x.floor()` wherever that is below
/// 2^63 in magnitude (where `x - x.floor()` would differ, at -0.0, both give
/// +0.0 after `smooth`); value noise is only ever asked at such points.
#[inline]
fn floor_i64(x: f32) -> i64 {
    let t = x as i64;
    if (t as f32) > x {
        t - 1
    } else {
        t
    }
}

/// `x.hypot(y)` to the bit, inlined: the square root of the exact f64 sum of
/// squares, rounded to f32, which is what glibc's `hypotf` computes (checked
/// against `f32::hypot` below), without a library call per pixel (5% of a render).
#[inline]
pub fn hypot(x: f32, y: f32) -> f32 {
    let (x, y) = (x as f64, y as f64);
    (x * x + y * y).sqrt() as f32
}

#[inline]
fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// The four lattice values of one cell of one noise field (its salt).
#[derive(Clone, Copy)]
struct Cell4 {
    i: i64,
    j: i64,
    salt: u64,
    corners: [f32; 4],
}

const CELL_SLOTS: usize = 256;

thread_local! {
    /// The last cell each noise field asked for, one slot per salt (its low
    /// bits). Neighbouring pixels ask one field for the same cell: a field at a
    /// 45 µm scale keeps a cell for 90 pixels of a row at 0.5 µm/px, and each
    /// cell costs six hashes. A memo of a pure function: the values are the same
    /// whether a slot hits or not, on any thread.
    static LAST_CELL: [std::cell::Cell<Cell4>; CELL_SLOTS] = const {
        [const {
            std::cell::Cell::new(Cell4 {
                i: i64::MIN,
                j: i64::MIN,
                salt: 0,
                corners: [0.0; 4],
            })
        }; CELL_SLOTS]
    };
}

/// The values at the corners (i, j), (i + 1, j), (i, j + 1), (i + 1, j + 1).
#[inline]
fn corners(i: i64, j: i64, salt: u64) -> [f32; 4] {
    let slot = (salt ^ (salt >> 8)) as usize % CELL_SLOTS;
    LAST_CELL.with(|cells| {
        let last = cells[slot].get();
        if last.i == i && last.j == j && last.salt == salt {
            return last.corners;
        }
        // hash2 with the row's half of the hash computed once per row (same values).
        let (r0, r1) = (mix((j as u64) ^ salt), mix(((j + 1) as u64) ^ salt));
        let v =
            |a: i64, row: u64| unit(mix((a as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ row), 0);
        let corners = [v(i, r0), v(i + 1, r0), v(i, r1), v(i + 1, r1)];
        cells[slot].set(Cell4 {
            i,
            j,
            salt,
            corners,
        });
        corners
    })
}

/// Smooth value noise in [0, 1] with unit lattice spacing.
#[inline]
pub fn value(x: f32, y: f32, salt: u64) -> f32 {
    let (i, j) = (floor_i64(x), floor_i64(y));
    let (fx, fy) = (i as f32, j as f32);
    let (tx, ty) = (smooth(x - fx), smooth(y - fy));
    let [a, b, c, d] = corners(i, j, salt);
    let top = a + (b - a) * tx;
    let bottom = c + (d - c) * tx;
    top + (bottom - top) * ty
}

/// Three independent value noises in [0, 1] with unit lattice spacing over a
/// rectangle, from one hash per lattice corner (its first three 16-bit fields; the
/// first field is [`value`]'s lattice, interpolated down the columns first), the
/// lattice hashed once and each row interpolated once: synth 1.16's grain changes
/// every pixel or two, where [`value`]'s memo would miss and hash six times a field.
pub struct Lattice3 {
    i0: i64,
    j0: i64,
    cols: usize,
    values: Vec<[f32; 3]>,
}

impl Lattice3 {
    /// The lattice for points with x in [x0, x1] and y in [y0, y1] (lattice units).
    pub fn covering(x0: f32, x1: f32, y0: f32, y1: f32, salt: u64) -> Lattice3 {
        let (i0, j0) = (floor_i64(x0), floor_i64(y0));
        let (i1, j1) = (floor_i64(x1) + 1, floor_i64(y1) + 1);
        let cols = (i1 - i0 + 1) as usize;
        let mut values = Vec::with_capacity(cols * (j1 - j0 + 1) as usize);
        for j in j0..=j1 {
            let row = mix((j as u64) ^ salt);
            values.extend((i0..=i1).map(|i| {
                let h = mix((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ row);
                [unit(h, 0), unit(h, 1), unit(h, 2)]
            }));
        }
        Lattice3 {
            i0,
            j0,
            cols,
            values,
        }
    }

    /// The three fields along the line y (lattice units), interpolated between the
    /// lattice rows once, at every lattice column: what [`Self::at`] reads a row's
    /// points from.
    pub fn row(&self, y: f32) -> Vec<[f32; 3]> {
        let j = floor_i64(y);
        let ty = smooth(y - j as f32);
        let k = (j - self.j0) as usize * self.cols;
        let (top, bottom) = (
            &self.values[k..k + self.cols],
            &self.values[k + self.cols..],
        );
        top.iter()
            .zip(bottom)
            .map(|(a, c)| std::array::from_fn(|f| a[f] + (c[f] - a[f]) * ty))
            .collect()
    }

    /// The three fields at x on the line whose [`Self::row`] is `row`.
    #[inline]
    pub fn at(&self, row: &[[f32; 3]], x: f32) -> [f32; 3] {
        let i = floor_i64(x);
        let tx = smooth(x - i as f32);
        let k = (i - self.i0) as usize;
        let (a, b) = (row[k], row[k + 1]);
        std::array::from_fn(|f| a[f] + (b[f] - a[f]) * tx)
    }
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

    /// [`Lattice3`]'s fields computed afresh at each point (the reference).
    fn value3(x: f32, y: f32, salt: u64) -> [f32; 3] {
        let (i, j) = (floor_i64(x), floor_i64(y));
        let (tx, ty) = (smooth(x - i as f32), smooth(y - j as f32));
        let (r0, r1) = (mix((j as u64) ^ salt), mix(((j + 1) as u64) ^ salt));
        let h = |a: i64, row: u64| mix((a as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ row);
        let [a, b, c, d] = [h(i, r0), h(i + 1, r0), h(i, r1), h(i + 1, r1)];
        std::array::from_fn(|k| {
            let k = k as u32;
            let left = unit(a, k) + (unit(c, k) - unit(a, k)) * ty;
            let right = unit(b, k) + (unit(d, k) - unit(b, k)) * ty;
            left + (right - left) * tx
        })
    }

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
    fn value3_is_value_and_two_more_independent_fields() {
        let (mut sum, mut n) = ([0.0f64; 3], 0usize);
        let mut cross = 0.0f64;
        for k in 0..4000 {
            let (x, y) = (k as f32 * 0.731 - 40.0, k as f32 * 0.377 - 20.0);
            let v = value3(x, y, 9);
            assert!((v[0] - value(x, y, 9)).abs() < 1e-6);
            let w = value3(x + 1e-3, y, 9);
            for f in 0..3 {
                assert!((0.0..=1.0).contains(&v[f]) && (v[f] - w[f]).abs() < 0.01);
                sum[f] += v[f] as f64;
            }
            cross += (v[1] as f64 - 0.5) * (v[2] as f64 - 0.5);
            n += 1;
        }
        for m in sum {
            assert!((m / n as f64 - 0.5).abs() < 0.05, "mean {}", m / n as f64);
        }
        // Uncorrelated fields: |covariance| well under the variance (about 0.04).
        assert!(
            (cross / n as f64).abs() < 0.006,
            "covariance {}",
            cross / n as f64
        );
    }

    #[test]
    fn a_lattice_table_gives_value3_exactly() {
        let (x0, x1, y0, y1) = (-13.3f32, 41.7f32, 7.9f32, 30.2f32);
        let table = Lattice3::covering(x0, x1, y0, y1, 0x6A11);
        for k in 0..3000 {
            let x = x0 + (x1 - x0) * ((k * 37 % 1000) as f32 / 999.0);
            let y = y0 + (y1 - y0) * ((k * 91 % 1000) as f32 / 999.0);
            let row = table.row(y);
            assert_eq!(table.at(&row, x), value3(x, y, 0x6A11), "({x}, {y})");
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
    fn value_noise_is_the_same_whether_its_cell_memo_hits_or_not() {
        // Salts 9 and 0x10009 share a memo slot; 10 has its own. Points walk
        // along rows (the memo hits) with the fields interleaved (the shared
        // slot misses), and every value must be the lattice's own.
        let reference = |x: f32, y: f32, salt: u64| {
            let (i, j) = (x.floor() as i64, y.floor() as i64);
            let (tx, ty) = (smooth(x - x.floor()), smooth(y - y.floor()));
            let v = |a: i64, b: i64| unit(hash2(a, b, salt), 0);
            let top = v(i, j) + (v(i + 1, j) - v(i, j)) * tx;
            let bottom = v(i, j + 1) + (v(i + 1, j + 1) - v(i, j + 1)) * tx;
            top + (bottom - top) * ty
        };
        for row in 0..40 {
            for k in 0..400 {
                let (x, y) = (k as f32 * 0.013 - 2.0, row as f32 * 0.11 - 1.5);
                for salt in [9u64, 10, 0x10009] {
                    assert_eq!(value(x, y, salt), reference(x, y, salt));
                }
                assert_eq!(value(x / 7.0, y, 9), reference(x / 7.0, y, 9));
            }
        }
        let handles: Vec<_> = (0..2)
            .map(|t| {
                std::thread::spawn(move || {
                    (0..2000)
                        .map(|k| value(k as f32 * 0.01, t as f32, 9).to_bits())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let got = h.join().unwrap();
            for (k, bits) in got.into_iter().enumerate() {
                assert_eq!(bits, reference(k as f32 * 0.01, t as f32, 9).to_bits());
            }
        }
    }

    #[test]
    fn floor_i64_is_the_library_floor() {
        let specials = [
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            -1e-30,
            1e-30,
            16_777_216.0,
            -16_777_217.0,
            1e18,
            -1e18,
        ];
        // Every special value and every 997th bit pattern below 2^62 in magnitude
        // (every exponent in range, both signs).
        let strided = (0..=u32::MAX)
            .step_by(997)
            .map(f32::from_bits)
            .filter(|x| x.abs() < 4.6e18);
        for x in specials.into_iter().chain(strided) {
            assert_eq!(floor_i64(x), x.floor() as i64, "floor of {x:e}");
            // What `value` uses: the fraction past the lattice point, after `smooth`.
            let (mine, lib) = (smooth(x - floor_i64(x) as f32), smooth(x - x.floor()));
            assert_eq!(mine.to_bits(), lib.to_bits(), "smoothed fraction of {x:e}");
        }
    }

    #[test]
    fn hypot_is_the_library_hypot() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for k in 0..2_000_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let (a, b) = (state as u32, (state >> 32) as u32);
            // Distances in µm as the renderer asks, then arbitrary finite floats.
            let (x, y) = if k % 2 == 0 {
                (
                    (a as f32 / 4.3e9 - 0.5) * 4000.0,
                    (b as f32 / 4.3e9 - 0.5) * 4000.0,
                )
            } else {
                (f32::from_bits(a), f32::from_bits(b))
            };
            if x.is_finite() && y.is_finite() {
                assert_eq!(
                    hypot(x, y).to_bits(),
                    x.hypot(y).to_bits(),
                    "hypot({x:e}, {y:e})"
                );
            }
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
