//! The LVM layer against real lvm2 on loop devices (metadata-only mode when the
//! kernel has no device-mapper). Needs root; never skipped.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestVg, VgLvm, lvm_cmd, metadata_only_here, test_vg};
use lvmpin_lvm::{CreateLv, Error, Lvm, LvmConfig, Owner};

const MIB: u64 = 1 << 20;

fn owner(uid: &str) -> Owner {
    Owner {
        claim_uid: uid.into(),
        claim_namespace: "db".into(),
        claim_name: format!("data-{uid}"),
        pv_name: format!("pvc-{uid}"),
    }
}

fn request(vg: &TestVg, uid: &str, size: u64) -> CreateLv {
    CreateLv {
        vg: vg.name.clone(),
        name: format!("pvc-{uid}"),
        size_bytes: size,
        thin_pool: None,
        source: None,
        owner: owner(uid),
    }
}

/// Polls `cond` until it holds or the deadline passes.
fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mode_follows_device_mapper_presence() {
    assert_eq!(
        Lvm::new(LvmConfig::default()).metadata_only(),
        metadata_only_here()
    );
}

#[test]
fn report_is_one_command_and_reads_real_state() {
    let vg = test_vg(64);
    let lvm = vg.lvm();
    let lv = lvm.create_lv(&request(&vg, "r1", 5 * MIB)).unwrap();
    // A wrapper that logs each call and then runs the real lvm.
    let log = vg.dir().join("calls.log");
    let wrapper = vg.script(
        "lvm-logging",
        &format!("echo \"$*\" >> '{}'\nexec lvm \"$@\"", log.display()),
    );
    let report = vg.lvm_with_binary(&wrapper).report().unwrap();
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.lines().count(), 1, "{calls}");
    assert!(calls.starts_with("fullreport"), "{calls}");

    let g = report.volume_group(&vg.name).expect("our VG in the report");
    assert_eq!(g.pv_count, 1);
    assert_eq!(g.missing_pv_count, 0);
    assert_eq!(g.lv_count, 1);
    assert_eq!(g.extent_size_bytes, 4 * MIB);
    // 64 MiB minus the metadata area leaves 15 extents; the LV took 2.
    assert_eq!(g.size_bytes, 60 * MIB);
    assert_eq!(g.free_bytes, g.size_bytes - 8 * MIB);
    let found = report.find_lv(&vg.name, "pvc-r1").unwrap();
    assert_eq!(found, &lv);
    assert_eq!(found.owner, Some(owner("r1")));
    assert_eq!(found.active, !metadata_only_here());
}

#[test]
fn create_rounds_up_to_extents_and_tags_the_owner() {
    let vg = test_vg(64);
    let lv = vg
        .lvm()
        .create_lv(&request(&vg, "c1", 5 * MIB + 1))
        .unwrap();
    assert_eq!(lv.vg, vg.name);
    assert_eq!(lv.name, "pvc-c1");
    assert_eq!(lv.size_bytes, 8 * MIB);
    assert_eq!(lv.owner, Some(owner("c1")));
    assert_eq!(lv.path(), Path::new("/dev").join(&vg.name).join("pvc-c1"));
    // The tags are on disk: read them back with plain lvs.
    let tags = lvm_cmd(
        "lvs",
        &[
            "--noheadings",
            "-o",
            "lv_tags",
            &format!("{}/pvc-c1", vg.name),
        ],
    );
    assert!(tags.contains("lvmpin.io/claim-uid=c1"), "{tags}");
    assert!(tags.contains("lvmpin.io/claim-namespace=db"), "{tags}");
    assert!(tags.contains("lvmpin.io/pv-name=pvc-c1"), "{tags}");
}

#[test]
fn create_is_idempotent_for_the_same_owner() {
    let vg = test_vg(64);
    let lvm = vg.lvm();
    let first = lvm.create_lv(&request(&vg, "i1", 4 * MIB)).unwrap();
    let again = lvm.create_lv(&request(&vg, "i1", 4 * MIB)).unwrap();
    assert_eq!(first.uuid, again.uuid);
    // A second instance (a restarted agent) sees the same LV through its tags.
    let restarted = Lvm::new(LvmConfig::default());
    let third = restarted.create_lv(&request(&vg, "i1", 4 * MIB)).unwrap();
    assert_eq!(first.uuid, third.uuid);
    assert_eq!(vg.lv_names(), ["pvc-i1"]);
}

#[test]
fn concurrent_creates_of_one_claim_make_one_lv() {
    let vg = test_vg(64);
    let lvm = vg.lvm();
    let req = request(&vg, "k1", 4 * MIB);
    let uuids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| lvm.create_lv(&req).map(|lv| lv.uuid)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert!(uuids.windows(2).all(|w| w[0] == w[1]), "{uuids:?}");
    assert_eq!(vg.lv_names(), ["pvc-k1"]);
}

#[test]
fn same_name_with_another_owner_is_refused() {
    let vg = test_vg(64);
    let lvm = vg.lvm();
    lvm.create_lv(&request(&vg, "o1", 4 * MIB)).unwrap();
    let mut thief = request(&vg, "o1", 4 * MIB);
    thief.owner = owner("someone-else");
    match lvm.create_lv(&thief) {
        Err(Error::OwnedByAnother {
            vg: g,
            lv,
            owner: o,
        }) => {
            assert_eq!((g.as_str(), lv.as_str()), (vg.name.as_str(), "pvc-o1"));
            assert_eq!(o.as_deref(), Some(&owner("o1")));
        }
        other => panic!("expected OwnedByAnother, got {other:?}"),
    }
    // An untagged LV with the name belongs to nobody we know: refused too.
    lvm_cmd("lvcreate", &untagged_args(&vg, "pvc-o2"));
    match lvm.create_lv(&request(&vg, "o2", 4 * MIB)) {
        Err(Error::OwnedByAnother { owner: None, .. }) => {}
        other => panic!("expected OwnedByAnother without owner, got {other:?}"),
    }
    assert_eq!(vg.lv_names(), ["pvc-o1", "pvc-o2"]);
}

fn untagged_args<'a>(vg: &'a TestVg, name: &'a str) -> Vec<&'a str> {
    let mut args = vec!["-q", "--name", name, "--size", "4m"];
    if metadata_only_here() {
        args.extend(["--activate", "n", "--zero", "n"]);
    }
    args.push(&vg.name);
    args
}

#[test]
fn remove_and_remove_missing() {
    let vg = test_vg(64);
    let lvm = vg.lvm();
    lvm.create_lv(&request(&vg, "d1", 4 * MIB)).unwrap();
    lvm.remove_lv(&vg.name, "pvc-d1").unwrap();
    assert!(vg.lv_names().is_empty());
    assert_eq!(lvm.find_lv(&vg.name, "pvc-d1").unwrap(), None);
    // Removing again (a retried delete) succeeds.
    lvm.remove_lv(&vg.name, "pvc-d1").unwrap();
    lvm.remove_lv(&vg.name, "pvc-never-existed").unwrap();
}

#[test]
fn extend_grows_and_never_shrinks() {
    let vg = test_vg(64);
    let lvm = vg.lvm();
    let lv = lvm.create_lv(&request(&vg, "e1", 4 * MIB)).unwrap();
    let grown = lvm.extend_lv(&vg.name, "pvc-e1", 10 * MIB).unwrap();
    assert_eq!(grown.size_bytes, 12 * MIB);
    assert_eq!(grown.uuid, lv.uuid);
    assert_eq!(grown.owner, lv.owner);
    // Already large enough: unchanged, and no lvextend error about equal sizes.
    assert_eq!(lvm.extend_lv(&vg.name, "pvc-e1", 12 * MIB).unwrap(), grown);
    assert_eq!(lvm.extend_lv(&vg.name, "pvc-e1", MIB).unwrap(), grown);
    assert!(matches!(
        lvm.extend_lv(&vg.name, "pvc-missing", 10 * MIB),
        Err(Error::LvNotFound { .. })
    ));
}

#[test]
fn insufficient_space_is_its_own_error() {
    let vg = test_vg(64);
    let lvm = vg.lvm();
    match lvm.create_lv(&request(&vg, "s1", 100 * MIB)) {
        Err(Error::InsufficientSpace {
            vg: g,
            requested,
            free,
        }) => {
            assert_eq!(g, vg.name);
            assert_eq!(requested, 100 * MIB);
            assert_eq!(free, 60 * MIB);
        }
        other => panic!("expected InsufficientSpace, got {other:?}"),
    }
    assert!(vg.lv_names().is_empty());
    lvm.create_lv(&request(&vg, "s2", 40 * MIB)).unwrap();
    match lvm.extend_lv(&vg.name, "pvc-s2", 80 * MIB) {
        Err(Error::InsufficientSpace {
            requested, free, ..
        }) => {
            assert_eq!(requested, 40 * MIB);
            assert_eq!(free, 20 * MIB);
        }
        other => panic!("expected InsufficientSpace, got {other:?}"),
    }
}

#[test]
fn missing_vg_is_vg_not_found() {
    let vg = test_vg(16); // only so that the name is unique and cleaned up
    let lvm = vg.lvm();
    let ghost = format!("{}-ghost", vg.name);
    let mut req = request(&vg, "m1", MIB);
    req.vg = ghost.clone();
    let is_vg_not_found = |r: Result<(), Error>| match r {
        Err(Error::VgNotFound { vg }) => assert_eq!(vg, ghost),
        other => panic!("expected VgNotFound, got {other:?}"),
    };
    is_vg_not_found(lvm.create_lv(&req).map(drop));
    is_vg_not_found(lvm.find_lv(&ghost, "pvc-m1").map(drop));
    is_vg_not_found(lvm.remove_lv(&ghost, "pvc-m1"));
    is_vg_not_found(lvm.extend_lv(&ghost, "pvc-m1", MIB).map(drop));
}

#[test]
fn bad_names_are_rejected_before_any_command_runs() {
    let vg = test_vg(16);
    let log = vg.dir().join("calls.log");
    let recorder = vg.script(
        "lvm-recorder",
        &format!("echo \"$*\" >> '{}'\nexit 1", log.display()),
    );
    for lvm in [
        vg.lvm_with_binary(&recorder),
        vg.lvm_with_binary(&vg.dir().join("does-not-exist")),
    ] {
        for (vgn, lvn) in [
            ("vg", "-rf"),
            ("vg", "a/b"),
            ("vg", "x;reboot"),
            ("vg", "snapshot0"),
            ("vg", "a_tmeta"),
            ("vg", ""),
            ("../etc", "lv"),
            ("vg x", "lv"),
            ("--force", "lv"),
        ] {
            let mut req = request(&vg, "b1", MIB);
            req.vg = vgn.into();
            req.name = lvn.into();
            let results = [
                lvm.create_lv(&req).map(drop),
                lvm.find_lv(vgn, lvn).map(drop),
                lvm.remove_lv(vgn, lvn),
                lvm.extend_lv(vgn, lvn, MIB).map(drop),
                lvm.activate_lv(vgn, lvn).map(drop),
            ];
            for r in results {
                assert!(
                    matches!(r, Err(Error::InvalidName { .. })),
                    "{vgn}/{lvn}: {r:?}"
                );
            }
        }
        let mut req = request(&vg, "b2", MIB);
        req.thin_pool = Some("pool/../x".into());
        assert!(matches!(
            lvm.create_lv(&req),
            Err(Error::InvalidName { .. })
        ));
    }
    assert!(
        !log.exists(),
        "a command ran: {:?}",
        std::fs::read_to_string(&log)
    );
}

#[test]
fn thin_and_activation_are_unsupported_without_device_mapper() {
    if !metadata_only_here() {
        return; // covered by the QEMU run, where device-mapper exists
    }
    let vg = test_vg(16);
    let lvm = vg.lvm();
    let mut req = request(&vg, "t1", MIB);
    req.thin_pool = Some("pool0".into());
    match lvm.create_lv(&req) {
        Err(e @ Error::Unsupported { .. }) => {
            assert!(e.to_string().contains("metadata-only"), "{e}")
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    lvm.create_lv(&request(&vg, "t2", MIB)).unwrap();
    assert!(matches!(
        lvm.activate_lv(&vg.name, "pvc-t2"),
        Err(Error::Unsupported { .. })
    ));
    assert_eq!(vg.lv_names(), ["pvc-t2"]);
}

/// Lists live (non-zombie) processes whose process group is `pgid`.
fn live_members_of_group(pgid: i32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..."; comm may hold spaces, so split after ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            found.push(stat);
        }
    }
    found
}

#[test]
fn hung_command_is_killed_with_its_group_at_the_timeout() {
    let vg = test_vg(16);
    let pid_file = vg.dir().join("pid");
    // The stand-in leaves a grandchild holding stdout and then hangs itself.
    let standin = vg.script(
        "lvm-hangs",
        &format!(
            "echo $$ > '{}'\nsleep 600 &\nexec sleep 600",
            pid_file.display()
        ),
    );
    let lvm = Lvm::new(LvmConfig {
        binary: standin,
        timeout: Duration::from_millis(800),
        ..LvmConfig::default()
    });
    let started = Instant::now();
    let err = lvm.report().unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        Error::Timeout { command, after } => {
            assert!(command.contains("lvm-hangs fullreport"), "{command}");
            assert_eq!(*after, Duration::from_millis(800));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(err.metric_label(), "timeout");
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
    let pgid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(
        "the killed group to disappear",
        Duration::from_secs(10),
        || live_members_of_group(pgid).is_empty(),
    );
}

#[test]
fn failed_command_carries_command_code_and_stderr() {
    let vg = test_vg(16);
    let standin = vg.script("lvm-fails", "echo 'disk on fire' >&2\nexit 42");
    match vg.lvm_with_binary(&standin).report() {
        Err(Error::CommandFailed {
            command,
            code,
            stderr,
        }) => {
            assert!(command.ends_with("lvm-fails fullreport --reportformat json --units b --nosuffix --configreport vg -o vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,pv_count,vg_missing_pv_count,lv_count,vg_tags --configreport lv -o lv_name,lv_uuid,lv_size,lv_attr,lv_tags,pool_lv,lv_active,lv_layout,data_percent,metadata_percent --configreport pv -o pv_name --configreport pvseg -o pvseg_start --configreport seg -o segtype")
                || command.contains("--driverloaded n"), "{command}");
            assert_eq!(code, Some(42));
            assert_eq!(stderr, "disk on fire");
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }
    let garbage = vg.script("lvm-garbage", "echo 'this is not json'");
    assert!(matches!(
        vg.lvm_with_binary(&garbage).report(),
        Err(Error::Parse { .. })
    ));
}

/// Child half of the crash test: creates an LV through a wrapper that stalls
/// after the real lvcreate, and is SIGKILLed there by the parent.
#[test]
#[ignore = "run by create_killed_midway_then_again_leaves_one_lv"]
fn crash_child() {
    let (Ok(vg), Ok(binary)) = (
        std::env::var("LVMPIN_CRASH_VG"),
        std::env::var("LVMPIN_CRASH_BIN"),
    ) else {
        return;
    };
    let lvm = Lvm::new(LvmConfig {
        binary: binary.into(),
        ..LvmConfig::default()
    });
    let req = CreateLv {
        vg,
        name: "pvc-x1".into(),
        size_bytes: 4 * MIB,
        thin_pool: None,
        source: None,
        owner: owner("x1"),
    };
    let _ = lvm.create_lv(&req);
    panic!("the parent should have killed this process");
}

#[test]
fn create_killed_midway_then_again_leaves_one_lv() {
    let vg = test_vg(64);
    let marker = vg.dir().join("created");
    let group = vg.dir().join("group");
    let wrapper = vg.script(
        "lvm-stalls",
        &format!(
            "echo $$ > '{group}'\nlvm \"$@\"\nrc=$?\nif [ \"$1\" = lvcreate ]; then touch '{marker}'; exec sleep 600; fi\nexit $rc",
            group = group.display(),
            marker = marker.display()
        ),
    );
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture"])
        .env("LVMPIN_CRASH_VG", &vg.name)
        .env("LVMPIN_CRASH_BIN", &wrapper)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("lvcreate in the child", Duration::from_secs(60), || {
        marker.exists()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // The stalled lvm stand-in lives in its own group; a real agent crash would
    // leave lvm to finish on its own, here we end it.
    let pgid: i32 = std::fs::read_to_string(&group)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::SIGKILL);
    wait_for(
        "the stalled stand-in to die",
        Duration::from_secs(10),
        || live_members_of_group(pgid).is_empty(),
    );

    let lv = vg
        .lvm()
        .create_lv(&CreateLv {
            vg: vg.name.clone(),
            name: "pvc-x1".into(),
            size_bytes: 4 * MIB,
            thin_pool: None,
            source: None,
            owner: owner("x1"),
        })
        .unwrap();
    assert_eq!(lv.owner, Some(owner("x1")));
    assert_eq!(vg.lv_names(), ["pvc-x1"]);
}

/// Only meaningful with device-mapper (the QEMU guest); here the metadata-only
/// counterpart above runs instead.
#[test]
fn activation_and_thin_volumes_with_device_mapper() {
    if metadata_only_here() {
        return;
    }
    let vg = test_vg(128);
    let lvm = vg.lvm();
    assert!(!lvm.metadata_only());
    let lv = lvm.create_lv(&request(&vg, "a1", 8 * MIB)).unwrap();
    assert!(lv.active, "{lv:?}");
    let path = lvm.activate_lv(&vg.name, "pvc-a1").unwrap();
    assert_eq!(path, lv.path());
    assert!(path.exists(), "{path:?}");
    let grown = lvm.extend_lv(&vg.name, "pvc-a1", 16 * MIB).unwrap();
    assert_eq!(grown.size_bytes, 16 * MIB);

    lvm_cmd(
        "lvcreate",
        &[
            "-q",
            "--type",
            "thin-pool",
            "--size",
            "32m",
            "--name",
            "pool0",
            &vg.name,
        ],
    );
    let mut req = request(&vg, "t1", 64 * MIB);
    req.thin_pool = Some("pool0".into());
    let thin = lvm.create_lv(&req).unwrap();
    assert_eq!(thin.pool.as_deref(), Some("pool0"));
    assert_eq!(
        thin.size_bytes,
        64 * MIB,
        "thin volumes may be larger than the pool"
    );
    assert_eq!(thin.owner, Some(owner("t1")));
    assert_eq!(lvm.create_lv(&req).unwrap().uuid, thin.uuid);
    let report = lvm.report().unwrap();
    let pool = report
        .thin_pools_in(&vg.name)
        .next()
        .expect("pool0 in the report");
    assert_eq!(pool.name, "pool0");
    assert_eq!(pool.size_bytes, 32 * MIB);
    assert!(
        pool.data_percent >= 0.0 && pool.data_percent < 100.0,
        "{pool:?}"
    );
    assert!(
        pool.metadata_percent > 0.0,
        "an active pool reports metadata use: {pool:?}"
    );
    lvm.remove_lv(&vg.name, "pvc-t1").unwrap();
    lvm.remove_lv(&vg.name, "pvc-a1").unwrap();
    assert_eq!(vg.lv_names(), ["pool0"]);
}
