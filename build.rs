// SPDX-License-Identifier: GPL-3.0-or-later
//! Build script of the ceph_rs VFS module: bindgen over the Samba headers prepared for the
//! *installed* smbd (samba-headers/prepare.sh), a small C shim for the macros Rust cannot
//! call, and links against the installed private Samba libraries.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const LIBDIR: &str = "/usr/lib/x86_64-linux-gnu/samba";
const SYSLIBDIR: &str = "/usr/lib/x86_64-linux-gnu";

fn fail(msg: &str) -> ! {
    // cargo shows build-script panics with the message; keep it to the point.
    eprintln!("\nerror: {msg}\n");
    panic!("{msg}");
}

fn installed_samba() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "samba"])
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run dpkg-query: {e}")));
    if !out.status.success() {
        fail("samba is not installed: run `bash selftest/install.sh` (samba 4.22.6 from bookworm-backports)");
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=samba-headers/wrapper.h");
    println!("cargo:rerun-if-changed=vfs_ceph_rs/src/shim.c");
    println!("cargo:rerun-if-changed=vfs_ceph_rs/src/shim.h");
    println!("cargo:rerun-if-env-changed=SAMBA_SDK");

    let pkg = installed_samba();
    let sdk = env::var("SAMBA_SDK").unwrap_or_else(|_| {
        let cache = env::var("CEPH_RS_SDK_CACHE")
            .unwrap_or_else(|_| "/var/cache/ceph_rs/samba-sdk".to_string());
        format!("{cache}/{}/sdk", pkg.replace(':', "_"))
    });
    let abi = Path::new(&sdk).join("abi.txt");
    println!("cargo:rerun-if-changed={}", abi.display());
    let abi_text = std::fs::read_to_string(&abi).unwrap_or_else(|_| {
        fail(&format!(
            "Samba headers for the installed samba {pkg} are not prepared ({} is missing).\n       \
             Run: bash samba-headers/prepare.sh",
            abi.display()
        ))
    });
    let prepared_for = abi_text
        .lines()
        .find_map(|l| l.strip_prefix("package: "))
        .unwrap_or("");
    if prepared_for != pkg || !abi_text.lines().any(|l| l == "status: ok") {
        fail(&format!(
            "Samba headers in {sdk} were prepared for samba '{prepared_for}', but samba '{pkg}' is installed.\n       \
             Run: bash samba-headers/prepare.sh"
        ));
    }

    let cflags = std::fs::read_to_string(format!("{sdk}/cflags")).unwrap_or_else(|e| {
        fail(&format!(
            "{sdk}/cflags: {e}; run: bash samba-headers/prepare.sh --force"
        ))
    });
    let args: Vec<String> = cflags
        .split_whitespace()
        .map(|a| a.replace("$SDK", &sdk))
        .collect();

    let bindings = bindgen::Builder::default()
        .header("samba-headers/wrapper.h")
        .header("vfs_ceph_rs/src/shim.h")
        .clang_args(&args)
        .allowlist_type("vfs_fn_pointers")
        .allowlist_type("vfs_handle_struct")
        .allowlist_type("files_struct")
        .allowlist_type("connection_struct")
        .allowlist_type("smb_filename")
        .allowlist_type("vfs_open_how")
        .allowlist_type("NTSTATUS")
        .allowlist_type("stat_ex")
        .allowlist_type("security_unix_token")
        .allowlist_type("vfs_statvfs_struct")
        .allowlist_type("dfs_GetDFSReferral")
        .allowlist_type("smb_acl_t")
        .allowlist_type("smb_acl_.*")
        .allowlist_function("smb_register_vfs")
        .allowlist_function("smb_vfs_call_.*")
        .allowlist_function("vfs_.*fsp_extension.*")
        .allowlist_function("fsp_str_dbg")
        .allowlist_function("smb_fname_str_dbg")
        .allowlist_function("fsp_get_pathref_fd")
        .allowlist_function("fsp_get_io_fd")
        .allowlist_function("fsp_set_fd")
        .allowlist_function("get_current_utok")
        .allowlist_function("get_current_uid")
        .allowlist_function("get_current_gid")
        .allowlist_function("become_root")
        .allowlist_function("unbecome_root")
        .allowlist_function("lp_parm_const_string")
        .allowlist_function("lp_parm_int")
        .allowlist_function("lp_parm_bool")
        .allowlist_function("debuglevel_get_class")
        .allowlist_function("debug_add_class")
        .allowlist_function("dbghdrclass")
        .allowlist_function("dbgtext")
        .allowlist_function("_?talloc_.*")
        .allowlist_function("_?tevent_.*")
        .allowlist_function("ceph_rs_shim_.*")
        .allowlist_function("synthetic_smb_fname")
        .allowlist_function("fget_ea_dos_attribute")
        .allowlist_function("set_ea_dos_attribute")
        .allowlist_function("vfs_get_fs_capabilities")
        .allowlist_function("posix_sys_acl_blob_get_fd")
        .allowlist_function("sys_acl_init")
        .allowlist_function("sys_acl_create_entry")
        .allowlist_function("msdfs_link_string")
        .allowlist_function("parse_msdfs_symlink")
        .allowlist_function("lp_strict_allocate")
        .allowlist_function("lp_msdfs_shuffle_referrals")
        .allowlist_function("map_nt_error_from_unix")
        .allowlist_function("vfs_stat_fsp")
        .allowlist_function("vfs_pwrite_data")
        .allowlist_function("vfs_offload_token_.*")
        .allowlist_function("change_to_user_and_service_by_fsp")
        .allowlist_function("set_create_timespec_ea")
        .allowlist_type("SMB_DISK_QUOTA")
        .allowlist_type("smb_file_time")
        .allowlist_type("referral")
        .allowlist_var("SMB_ACL_TYPE_.*")
        .allowlist_var("SMB_ACL_READ|SMB_ACL_WRITE|SMB_ACL_EXECUTE")
        .allowlist_var("FILE_CASE_.*")
        .allowlist_var("VFS_RENAME_HOW_.*")
        .allowlist_var("VFS_OPEN_HOW_.*")
        .allowlist_var("SMB_VFS_INTERFACE_VERSION")
        .allowlist_var("DBGC_VFS")
        .allowlist_var("DBGC_ALL")
        .allowlist_var("TEVENT_FD_.*")
        .allowlist_var("FSCTL_SRV_.*|FSCTL_DUP_EXTENTS_TO_FILE|FSCTL_OFFLOAD_WRITE")
        .derive_default(false)
        .layout_tests(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| {
            fail(&format!(
                "bindgen over the Samba headers in {sdk} failed: {e}"
            ))
        });
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("samba_bindings.rs");
    bindings.write_to_file(&out).expect("write bindings");

    // The few C macros (talloc/tevent helpers that are macros in C) wrapped as functions.
    let mut cc = cc::Build::new();
    cc.file("vfs_ceph_rs/src/shim.c")
        .include("samba-headers")
        .warnings(false);
    for a in &args {
        if let Some(d) = a.strip_prefix("-I") {
            cc.include(d);
        } else if let Some(d) = a.strip_prefix("-D") {
            let mut kv = d.splitn(2, '=');
            cc.define(kv.next().unwrap(), kv.next());
        }
    }
    cc.compile("ceph_rs_shim");

    // Link against the installed private libs (no unversioned .so symlinks exist). The
    // symbols carry Debian-version-specific symbol versions: a samba update means a rebuild.
    println!("cargo:rustc-link-search=native={LIBDIR}");
    println!("cargo:rustc-link-search=native={SYSLIBDIR}");
    for lib in [
        "libsmbd-base-private-samba.so.0",
        "libsmbd-shim-private-samba.so.0",
        "libsamba-debug-private-samba.so.0",
        "libsmbconf.so.0",
        "libsamba-util.so.0",
        "libtevent.so.0",
        "libtevent-util.so.0",
        "libtalloc.so.2",
    ] {
        println!("cargo:rustc-link-lib=dylib:+verbatim={lib}");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{LIBDIR}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-undefined");
}
