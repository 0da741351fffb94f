//! LVM layer figures: create+remove latency of linear LVs on a loop-backed VG
//! (metadata-only when the kernel lacks device-mapper), and parse time of a
//! report of one VG holding 1,000 LVs. Prints numbers; asserts nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use lvmpin_lvm::{CreateLv, Owner, owner_tags, parse_report};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<32} n={:<4} p50={:>9.3} ms  p99={:>9.3} ms  max={:>9.3} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
}

fn owner(i: usize) -> Owner {
    let uid = format!("00000000-0000-4000-8000-{i:012}");
    Owner {
        pv_name: format!("pvc-{uid}"),
        claim_uid: uid,
        claim_namespace: "bench".into(),
        claim_name: format!("data-{i}"),
    }
}

/// A fullreport as lvm prints it for one VG with `lvs` LVs.
fn synthetic_report(lvs: usize) -> String {
    let mut rows = Vec::with_capacity(lvs);
    for i in 0..lvs {
        let o = owner(i);
        rows.push(format!(
            r#"{{"lv_name":"{pv}", "lv_uuid":"uuid-{i:06}", "lv_size":"{size}", "lv_attr":"-wi-a-----", "lv_tags":"{tags}", "pool_lv":"", "lv_active":"active", "lv_layout":"linear", "data_percent":"", "metadata_percent":""}}"#,
            pv = o.pv_name,
            size = (i as u64 % 50 + 1) << 30,
            tags = owner_tags(&o).join(","),
        ));
    }
    format!(
        r#"{{"report":[{{"vg":[{{"vg_name":"vg-bench", "vg_uuid":"u", "vg_size":"{size}", "vg_free":"1073741824", "vg_extent_size":"4194304", "pv_count":"4", "vg_missing_pv_count":"0", "lv_count":"{lvs}", "vg_tags":""}}],
"pv":[{{"pv_name":"/dev/sdb"}}],
"lv":[
{rows}
],
"pvseg":[], "seg":[]}}]}}"#,
        size = 60u64 << 40,
        rows = rows.join(",\n"),
    )
}

fn bench_parse() {
    let json = synthetic_report(1000);
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let report = parse_report(&json).expect("synthetic report parses");
        samples.push(started.elapsed());
        assert_eq!(report.logical_volumes.len(), 1000);
    }
    println!("report JSON for 1,000 LVs: {} KiB", json.len() / 1024);
    let total: Duration = samples.iter().sum();
    println!(
        "parse_report throughput: {:.0} LVs/s",
        1000.0 * samples.len() as f64 / total.as_secs_f64()
    );
    summary("parse_report (1 VG, 1,000 LVs)", samples);
}

fn bench_create_remove() {
    if !nix::unistd::Uid::effective().is_root() {
        println!("create+remove: skipped, needs root for loop devices");
        return;
    }
    let vg = common::test_vg(1024);
    let lvm = common::VgLvm::lvm(&vg);
    println!(
        "create+remove on loop-backed VG {} (metadata-only: {})",
        vg.name,
        lvm.metadata_only()
    );
    let (mut create, mut remove, mut pair) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..30 {
        let o = owner(i);
        let req = CreateLv {
            vg: vg.name.clone(),
            name: o.pv_name.clone(),
            size_bytes: 64 << 20,
            thin_pool: None,
            source: None,
            owner: o,
        };
        let t0 = Instant::now();
        lvm.create_lv(&req).expect("create");
        let t1 = Instant::now();
        lvm.remove_lv(&req.vg, &req.name).expect("remove");
        let t2 = Instant::now();
        create.push(t1 - t0);
        remove.push(t2 - t1);
        pair.push(t2 - t0);
    }
    summary("create_lv (linear, 64 MiB)", create);
    summary("remove_lv", remove);
    summary("create_lv + remove_lv", pair);

    // One scan (report) of the VG holding 100 LVs.
    for i in 0..100 {
        let o = owner(1000 + i);
        lvm.create_lv(&CreateLv {
            vg: vg.name.clone(),
            name: o.pv_name.clone(),
            size_bytes: 4 << 20,
            thin_pool: None,
            source: None,
            owner: o,
        })
        .expect("create");
    }
    let mut scans = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        let r = lvm.report().expect("report");
        scans.push(t0.elapsed());
        assert_eq!(r.lvs_in(&vg.name).count(), 100);
    }
    summary("report() with 100 LVs in VG", scans);
}

fn main() {
    bench_parse();
    bench_create_remove();
}
