//! MD5, the hash behind S3's ETags and `Content-MD5`, computed by AWS-LC (already linked for
//! TLS) rather than the pure-Rust `md-5` crate.
//!
//! MD5 cannot be parallelised within one stream, so it is the slowest step of every PUT: on
//! these machines AWS-LC's assembly does ~770 MiB/s on one core against ~610 MiB/s for `md-5`
//! (and ~60 MiB/s for `md-5` in an unoptimised build). AWS-LC exposes MD5 only through its C
//! API, hence the one `unsafe` block in the crate; the tests compare it with `md-5`.
//!
//! Must not: be used for anything where collisions matter (MD5 is broken for that; here it only
//! names content the way S3 does).

use aws_lc_sys::{MD5_CTX, MD5_Final, MD5_Init, MD5_Update};

/// An incremental MD5.
pub struct Md5 {
    ctx: MD5_CTX,
}

impl Md5 {
    pub fn new() -> Md5 {
        // SAFETY: `MD5_CTX` is plain data (integers and a byte array), for which all zeroes is
        // a valid value, and `MD5_Init` only writes the fresh context it is given.
        let ctx = unsafe {
            let mut ctx: MD5_CTX = std::mem::zeroed();
            MD5_Init(&mut ctx);
            ctx
        };
        Md5 { ctx }
    }

    pub fn update(&mut self, data: &[u8]) {
        // SAFETY: the context was set up by `MD5_Init` and is exclusively borrowed; `data` is
        // valid for `data.len()` bytes, which `MD5_Update` only reads.
        unsafe {
            MD5_Update(&mut self.ctx, data.as_ptr().cast(), data.len());
        }
    }

    /// The 16-byte digest.
    pub fn finalize(mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        // SAFETY: as in `update`; `out` has the 16 bytes `MD5_Final` writes.
        unsafe {
            MD5_Final(out.as_mut_ptr(), &mut self.ctx);
        }
        out
    }

    /// The digest of `data` in one go.
    #[cfg(test)]
    pub fn digest(data: &[u8]) -> [u8; 16] {
        let mut md5 = Md5::new();
        md5.update(data);
        md5.finalize()
    }
}

impl Default for Md5 {
    fn default() -> Md5 {
        Md5::new()
    }
}

#[cfg(test)]
mod tests {
    use md5::Digest as _;

    use super::Md5;

    #[test]
    fn rfc_1321_test_suite() {
        let suite = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in suite {
            assert_eq!(
                hex::encode(Md5::digest(input.as_bytes())),
                want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn any_split_of_the_input_gives_the_digest_of_the_md5_crate() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let want: [u8; 16] = md5::Md5::digest(&data).into();
        assert_eq!(Md5::digest(&data), want);
        // Pieces of awkward sizes, across MD5's 64-byte block boundaries.
        for piece in [1, 63, 64, 65, 1000, 4096, 65_537] {
            let mut md5 = Md5::new();
            for chunk in data.chunks(piece) {
                md5.update(chunk);
            }
            assert_eq!(md5.finalize(), want, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn a_hasher_moves_between_threads() {
        let mut md5 = Md5::new();
        md5.update(b"message ");
        let md5 = std::thread::spawn(move || {
            let mut md5 = md5;
            md5.update(b"digest");
            md5
        })
        .join()
        .unwrap();
        assert_eq!(
            hex::encode(md5.finalize()),
            "f96b697d7cb7938d525a2f31aaf161d0"
        );
    }
}
