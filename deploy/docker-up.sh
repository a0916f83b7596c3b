#!/usr/bin/env bash
# Make sure a Docker engine runs on this machine (Debian): install docker.io and debootstrap
# when missing, start dockerd when it is not running, and wait until it answers.
set -euo pipefail

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io debootstrap >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd" >&2
    nohup dockerd >/var/log/hotpool-dockerd.log 2>&1 &
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/hotpool-dockerd.log" >&2; exit 1; }
fi
