// `sqlx::migrate!()` embeds the migrations at compile time; without this line cargo
// would not notice a new migration file and the binary would ship an old schema.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
