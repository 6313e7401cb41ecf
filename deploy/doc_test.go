// Package deploy holds no Go code: it is the deployment kit (the three roles'
// configs, the systemd units and users, the Prometheus scrape config and alert
// rules), and these tests check that the kit works with this build — that the
// configs load with the real loader, the units pass systemd-analyze verify and
// keep their hardening, the alert rules pass promtool and fire as meant — and
// that make release and make cross do what students and CI rely on.
package deploy
