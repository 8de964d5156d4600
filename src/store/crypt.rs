//! Encryption at rest (docs/security.md, Encryption at rest): published
//! audio in the [age](https://age-encryption.org/v1) format, to X25519
//! public keys (`[encryption] recipients`).
//!
//! The writing side (`srs serve`) holds only public keys: a stolen recorder
//! or disk cannot decrypt what it wrote. The reading side (the API of a
//! server given `[encryption] identities`, `srs export`) holds the private
//! keys. Several recipients encrypt each file to every one of them (key
//! rotation: add the new key, keep the old one until its holders have the
//! new one); several identities read files written to any of them (keep
//! old identities after a rotation to read older recordings).
//!
//! A file `x.wav` is encrypted at publication into `x.wav.age` (written
//! as `x.wav.age.tmp`, renamed, then `x.wav` removed), in the recording's
//! `.incoming` directory before it is published: the published tree never
//! holds plain audio. The files being recorded stay plain in `.incoming`
//! while their call lasts (they are rewritten as they grow and must be
//! recoverable after a crash).

use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Suffix of an encrypted file.
pub const AGE_SUFFIX: &str = ".age";
/// `files[].encryption` of an age-encrypted file.
pub const AGE: &str = "age";
/// Suffix of an encrypted file being written.
const TMP_SUFFIX: &str = ".age.tmp";

/// Errors of encryption at rest. Messages name the key or file.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    /// `[encryption] recipients` holds something that is not an X25519
    /// age public key.
    #[error(
        "invalid encryption.recipients entry {0:?}: expected an age X25519 public key (age1...)"
    )]
    BadRecipient(String),
    /// An identity file could not be read or holds no usable identity.
    #[error("encryption.identities: {path}: {reason}")]
    BadIdentity { path: PathBuf, reason: String },
    /// Reading or writing a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// age refused to encrypt (no recipient).
    #[error("encrypting {path}: {reason}")]
    Encrypt { path: PathBuf, reason: String },
    /// The reading side has no identity at all.
    #[error("recording is encrypted and this server has no identity to decrypt it (set [encryption] identities)")]
    NoIdentity,
    /// No configured identity opens the file (a key rotated away?).
    #[error("{path}: none of the configured identities can decrypt it ({reason})")]
    Decrypt { path: PathBuf, reason: String },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CryptError {
    let path = path.to_path_buf();
    move |source| CryptError::Io { op, path, source }
}

/// The public keys published audio is encrypted to.
#[derive(Clone)]
pub struct Encryptor {
    recipients: Vec<age::x25519::Recipient>,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self.recipients.iter().map(ToString::to_string).collect();
        f.debug_struct("Encryptor")
            .field("recipients", &keys)
            .finish()
    }
}

impl Encryptor {
    /// From `[encryption] recipients`; `Ok(None)` when the list is empty
    /// (encryption off).
    pub fn from_recipients(keys: &[String]) -> Result<Option<Encryptor>, CryptError> {
        let recipients = keys
            .iter()
            .map(|k| {
                k.trim()
                    .parse::<age::x25519::Recipient>()
                    .map_err(|_| CryptError::BadRecipient(k.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!recipients.is_empty()).then_some(Encryptor { recipients }))
    }

    /// Encrypts `dir/name` into `dir/name.age` and removes `dir/name`.
    /// Returns the new name. Durability is the caller's (the drop's group
    /// commit flushes the whole file system before the rename into place).
    /// On error the plain file is left as it was and no `.age` remains.
    pub fn encrypt_file(&self, dir: &Path, name: &str) -> Result<String, CryptError> {
        let plain = dir.join(name);
        let stored = format!("{name}{AGE_SUFFIX}");
        let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
        let result = self.encrypt_to(&plain, &tmp);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let target = dir.join(&stored);
        std::fs::rename(&tmp, &target).map_err(io("renaming", &tmp))?;
        std::fs::remove_file(&plain).map_err(io("removing", &plain))?;
        Ok(stored)
    }

    fn encrypt_to(&self, plain: &Path, out: &Path) -> Result<(), CryptError> {
        let mut input = std::fs::File::open(plain).map_err(io("opening", plain))?;
        let file = std::fs::File::create(out).map_err(io("creating", out))?;
        let encryptor = age::Encryptor::with_recipients(
            self.recipients.iter().map(|r| r as &dyn age::Recipient),
        )
        .map_err(|e| CryptError::Encrypt {
            path: plain.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut w = encryptor
            .wrap_output(std::io::BufWriter::with_capacity(64 << 10, file))
            .map_err(io("writing", out))?;
        std::io::copy(&mut input, &mut w).map_err(io("encrypting", plain))?;
        let mut buffered = w.finish().map_err(io("writing", out))?;
        buffered.flush().map_err(io("writing", out))?;
        Ok(())
    }
}

/// The private keys the reading side decrypts with.
pub struct Decryptor {
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("identities", &self.identities.len())
            .finish()
    }
}

/// A decrypting reader over an encrypted file, seekable (HTTP Range).
pub type DecryptingReader = age::stream::StreamReader<BufReader<std::fs::File>>;

impl Decryptor {
    /// Reads every identity file of `[encryption] identities` (age
    /// identity files: `AGE-SECRET-KEY-1...` lines, `#` comments);
    /// `Ok(None)` when none is configured.
    pub fn from_files(paths: &[PathBuf]) -> Result<Option<Decryptor>, CryptError> {
        let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        for path in paths {
            let bad = |reason: String| CryptError::BadIdentity {
                path: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            let mut found = 0;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let id: age::x25519::Identity = line.parse().map_err(|_| {
                    bad(format!(
                        "line {}: not an age X25519 identity (AGE-SECRET-KEY-1...)",
                        n + 1
                    ))
                })?;
                identities.push(Box::new(id));
                found += 1;
            }
            if found == 0 {
                return Err(bad("no identity in the file".into()));
            }
        }
        Ok((!identities.is_empty()).then_some(Decryptor { identities }))
    }

    /// Opens an encrypted file for reading: the plaintext reader and its
    /// length.
    pub fn open(
        &self,
        file: std::fs::File,
        path: &Path,
    ) -> Result<(DecryptingReader, u64), CryptError> {
        let failed = |reason: String| CryptError::Decrypt {
            path: path.to_path_buf(),
            reason,
        };
        let d = age::Decryptor::new_buffered(BufReader::with_capacity(64 << 10, file))
            .map_err(|e| failed(e.to_string()))?;
        let mut r = d
            .decrypt(
                self.identities
                    .iter()
                    .map(|i| i.as_ref() as &dyn age::Identity),
            )
            .map_err(|e| failed(e.to_string()))?;
        // The plaintext length: age seeks to the last chunk and
        // authenticates it (a truncated file fails here).
        let len = r
            .seek(SeekFrom::End(0))
            .map_err(|e| failed(e.to_string()))?;
        r.seek(SeekFrom::Start(0))
            .map_err(|e| failed(e.to_string()))?;
        Ok((r, len))
    }

    /// Decrypts `src` into `dst` (written whole, then renamed into place).
    pub fn decrypt_file(&self, src: &Path, dst: &Path) -> Result<u64, CryptError> {
        let file = std::fs::File::open(src).map_err(io("opening", src))?;
        let (mut r, _) = self.open(file, src)?;
        let tmp = dst.with_extension("part");
        let mut out = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        let n = std::io::copy(&mut r, &mut out).map_err(|e| CryptError::Decrypt {
            path: src.to_path_buf(),
            reason: e.to_string(),
        })?;
        out.sync_all().map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, dst).map_err(io("renaming", &tmp))?;
        Ok(n)
    }
}

/// A fresh X25519 identity: (the identity file's text, the public key).
pub fn generate() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {public}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        id.to_string().expose_secret()
    );
    (text, public)
}

/// Whether `name` is an encrypted file's name being written (crash
/// leftovers removed by recovery).
pub fn is_partial(name: &str) -> bool {
    name.ends_with(TMP_SUFFIX)
}

/// Reads up to `buf.len()` bytes (short only at the end).
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_encrypted_to_two_keys_opens_with_either_and_seeks() {
        let dir = tempfile::tempdir().unwrap();
        let (old_id, old_pub) = generate();
        let (new_id, new_pub) = generate();
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("a.wav"), &plain).unwrap();
        let enc = Encryptor::from_recipients(&[old_pub, new_pub.clone()])
            .unwrap()
            .unwrap();
        assert_eq!(enc.encrypt_file(dir.path(), "a.wav").unwrap(), "a.wav.age");
        assert!(!dir.path().join("a.wav").exists(), "no plain file left");
        let stored = std::fs::read(dir.path().join("a.wav.age")).unwrap();
        assert!(stored.starts_with(b"age-encryption.org/v1"));
        assert!(!stored.windows(16).any(|w| w == &plain[1000..1016]));
        for id in [&old_id, &new_id] {
            let key = dir.path().join("key.txt");
            std::fs::write(&key, id).unwrap();
            let dec = Decryptor::from_files(&[key]).unwrap().unwrap();
            let path = dir.path().join("a.wav.age");
            let (mut r, len) = dec
                .open(std::fs::File::open(&path).unwrap(), &path)
                .unwrap();
            assert_eq!(len, plain.len() as u64);
            r.seek(SeekFrom::Start(150_000)).unwrap();
            let mut buf = vec![0u8; 100];
            assert_eq!(read_full(&mut r, &mut buf).unwrap(), 100);
            assert_eq!(buf, plain[150_000..150_100]);
        }
        // An identity of neither key: a clear error, no plaintext.
        let (other, _) = generate();
        let key = dir.path().join("other.txt");
        std::fs::write(&key, other).unwrap();
        let dec = Decryptor::from_files(&[key]).unwrap().unwrap();
        let path = dir.path().join("a.wav.age");
        let Err(e) = dec.open(std::fs::File::open(&path).unwrap(), &path) else {
            panic!("decrypted with the wrong key");
        };
        assert!(
            e.to_string().contains("none of the configured identities"),
            "{e}"
        );
    }

    #[test]
    fn bad_keys_are_named() {
        let e = Encryptor::from_recipients(&["age1nope".into()]).unwrap_err();
        assert!(e.to_string().contains("age1nope"), "{e}");
        assert!(Encryptor::from_recipients(&[]).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.txt");
        std::fs::write(&key, "# only a comment\n").unwrap();
        let e = Decryptor::from_files(std::slice::from_ref(&key)).unwrap_err();
        assert!(e.to_string().contains("k.txt"), "{e}");
        std::fs::write(&key, "AGE-SECRET-KEY-1XYZ\n").unwrap();
        let e = Decryptor::from_files(&[key]).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
