//! A minimal writer for the `newc` cpio format the Linux kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst): directories, files,
//! symlinks and character devices, in order, then the `TRAILER!!!` entry.

/// An initramfs under construction.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

const DIR: u32 = 0o040_000;
const FILE: u32 = 0o100_000;
const SYMLINK: u32 = 0o120_000;
const CHAR_DEVICE: u32 = 0o020_000;

impl Cpio {
    pub fn dir(&mut self, path: &str) {
        self.entry(path, DIR | 0o755, &[], (0, 0));
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, FILE | mode, data, (0, 0));
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, SYMLINK | 0o777, target.as_bytes(), (0, 0));
    }

    /// A character device node (`/dev/console` is 5:1): the kernel opens
    /// /dev/console for init's stdin, stdout and stderr before /init runs.
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, CHAR_DEVICE | mode, &[], (major, minor));
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8], (rdev_major, rdev_minor): (u32, u32)) {
        self.ino += 1;
        let name = path.trim_start_matches('/');
        let nlink = if mode & DIR != 0 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev_major,
            rdev_minor,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut c = Cpio::default();
        c.file("/init", 0o755, b"hi");
        let out = c.finish();
        assert_eq!(&out[..6], b"070701");
        // 6 + 13 * 8 = 110 header bytes, then "init\0" padded to 116, then data.
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(&out[116..118], b"hi");
        assert_eq!(out.len() % 4, 0);
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn char_device_fields() {
        let mut c = Cpio::default();
        c.char_device("/dev/console", 0o600, 5, 1);
        let out = c.finish();
        let field = |n: usize| &out[6 + n * 8..6 + (n + 1) * 8];
        assert_eq!(field(1), b"00002180"); // S_IFCHR | 0600
        assert_eq!(field(6), b"00000000"); // no data
        assert_eq!(field(9), b"00000005"); // rdevmajor
        assert_eq!(field(10), b"00000001"); // rdevminor
        assert_eq!(&out[110..122], b"dev/console\0");
    }
}
