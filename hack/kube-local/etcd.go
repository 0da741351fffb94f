package main

// Embedded etcd (go.etcd.io/etcd/server/v3/embed), the apiserver's storage.
//
// A single member on loopback, plain HTTP (nothing but this process talks to
// it), data in DATA_DIR/etcd. The etcd server version is the one
// k8s.io/kubernetes itself pins in its go.mod, i.e. the version its
// integration tests run against.

import (
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func startEtcd(dataDir, host string) (*embed.Etcd, string, error) {
	// etcd takes URLs, not listeners, so ports are found by binding :0 and
	// releasing the port right before etcd binds it again. The window is
	// tiny; a clash makes StartEtcd fail and the caller retries.
	clientPort, err := freePort(host)
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort(host)
	if err != nil {
		return nil, "", err
	}
	clientURL := url.URL{Scheme: "http", Host: joinHostPort(host, clientPort)}
	peerURL := url.URL{Scheme: "http", Host: joinHostPort(host, peerPort)}

	cfg := embed.NewConfig()
	cfg.Name = "kube-local"
	cfg.Dir = filepath.Join(dataDir, "etcd")
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// No metrics listener: nothing scrapes it, and it would be one more port.
	cfg.ListenMetricsUrls = nil
	// Quiet: etcd logs every request slower than 100ms at warn level, which
	// on a loaded 2-core CI machine is most of them. Errors still show.
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	// Test data need not survive a crash of the machine; skipping fsync
	// (etcd's --unsafe-no-fsync) makes every write, i.e. every API object
	// change, cheaper on a slow CI disk.
	cfg.UnsafeNoFsync = true

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, "", fmt.Errorf("etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", fmt.Errorf("etcd not ready after 60s")
	}
	return e, clientURL.String(), nil
}
