//! Rebuilds the crate when anything under `web/` changes, because `include_dir!` only tracks
//! the files that existed at the last build.

fn main() {
    println!("cargo:rerun-if-changed=../../web");
}
