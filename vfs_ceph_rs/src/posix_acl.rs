// SPDX-License-Identifier: GPL-3.0-or-later
//! POSIX ACLs in their Linux xattr form (`system.posix_acl_access` /
//! `system.posix_acl_default`): a 4-byte version (2), then 8-byte entries
//! `{ tag: u16, perm: u16, id: u32 }`, little endian, sorted by tag then id.
//! CephFS stores and enforces ACLs in exactly this form (client_acl_type=posix_acl).

/// ACL entry tags of smbd (`smb_acl_tag_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tag {
    UserObj,
    User(u32),
    GroupObj,
    Group(u32),
    Mask,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub tag: Tag,
    /// rwx bits: read 4, write 2, execute 1 (same in smbd and the xattr).
    pub perm: u32,
}

const VERSION: u32 = 2;
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// Decode an xattr value; EINVAL for a malformed one.
pub fn decode(buf: &[u8]) -> Result<Vec<Entry>, i32> {
    if buf.len() < 4 || !(buf.len() - 4).is_multiple_of(8) {
        return Err(libc::EINVAL);
    }
    if u32::from_le_bytes(buf[0..4].try_into().unwrap()) != VERSION {
        return Err(libc::EINVAL);
    }
    buf[4..]
        .chunks_exact(8)
        .map(|c| {
            let tag = u16::from_le_bytes([c[0], c[1]]);
            let perm = u16::from_le_bytes([c[2], c[3]]) as u32 & 7;
            let id = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            let tag = match tag {
                ACL_USER_OBJ => Tag::UserObj,
                ACL_USER => Tag::User(id),
                ACL_GROUP_OBJ => Tag::GroupObj,
                ACL_GROUP => Tag::Group(id),
                ACL_MASK => Tag::Mask,
                ACL_OTHER => Tag::Other,
                _ => return Err(libc::EINVAL),
            };
            Ok(Entry { tag, perm })
        })
        .collect()
}

/// Encode entries (sorted as the kernel and CephFS expect).
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut sorted: Vec<(u16, u32, u16)> = entries
        .iter()
        .map(|e| {
            let (tag, id) = match e.tag {
                Tag::UserObj => (ACL_USER_OBJ, UNDEFINED_ID),
                Tag::User(u) => (ACL_USER, u),
                Tag::GroupObj => (ACL_GROUP_OBJ, UNDEFINED_ID),
                Tag::Group(g) => (ACL_GROUP, g),
                Tag::Mask => (ACL_MASK, UNDEFINED_ID),
                Tag::Other => (ACL_OTHER, UNDEFINED_ID),
            };
            (tag, id, (e.perm & 7) as u16)
        })
        .collect();
    sorted.sort_by_key(|&(t, id, _)| (t, id));
    let mut out = Vec::with_capacity(4 + 8 * sorted.len());
    out.extend_from_slice(&VERSION.to_le_bytes());
    for (t, id, p) in sorted {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// The three-entry ACL equivalent to a file mode (no ACL xattr present).
pub fn from_mode(mode: u32) -> Vec<Entry> {
    vec![
        Entry {
            tag: Tag::UserObj,
            perm: (mode >> 6) & 7,
        },
        Entry {
            tag: Tag::GroupObj,
            perm: (mode >> 3) & 7,
        },
        Entry {
            tag: Tag::Other,
            perm: mode & 7,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_sorted() {
        let e = vec![
            Entry {
                tag: Tag::Other,
                perm: 4,
            },
            Entry {
                tag: Tag::User(1002),
                perm: 6,
            },
            Entry {
                tag: Tag::User(1001),
                perm: 7,
            },
            Entry {
                tag: Tag::UserObj,
                perm: 7,
            },
            Entry {
                tag: Tag::Mask,
                perm: 7,
            },
            Entry {
                tag: Tag::GroupObj,
                perm: 5,
            },
        ];
        let b = encode(&e);
        assert_eq!(b.len(), 4 + 8 * 6);
        let d = decode(&b).unwrap();
        let tags: Vec<Tag> = d.iter().map(|x| x.tag).collect();
        assert_eq!(
            tags,
            vec![
                Tag::UserObj,
                Tag::User(1001),
                Tag::User(1002),
                Tag::GroupObj,
                Tag::Mask,
                Tag::Other
            ]
        );
        assert_eq!(d[1].perm, 7);
        assert_eq!(d[2].perm, 6);
    }

    #[test]
    fn known_bytes() {
        // setfacl -m u::rw-,g::r--,o::--- gives exactly this xattr.
        let b = encode(&from_mode(0o640));
        assert_eq!(
            b,
            [
                2, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 4, 0, 4, 0, 255, 255, 255, 255, 0x20,
                0, 0, 0, 255, 255, 255, 255
            ]
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(decode(&[]), Err(libc::EINVAL));
        assert_eq!(decode(&[1, 0, 0, 0]), Err(libc::EINVAL));
        assert_eq!(decode(&[2, 0, 0, 0, 1]), Err(libc::EINVAL));
        assert_eq!(
            decode(&[2, 0, 0, 0, 0x40, 0, 7, 0, 0, 0, 0, 0]),
            Err(libc::EINVAL)
        );
        assert_eq!(decode(&[2, 0, 0, 0]).unwrap(), vec![]);
    }
}
