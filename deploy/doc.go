// Package deploy holds no code: its tests check the deployment files at the
// module root (Dockerfile, .dockerignore, docker-compose.yml) and in this
// directory (nlbridge.service, nlbridge.yaml) without running them, since
// neither Docker nor systemd need be present where the tests run.
package deploy
