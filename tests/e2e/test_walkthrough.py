"""The README walkthrough, command by command, against a real `courier serve`."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.e2e.conftest import CourierProcess


def test_readme_walkthrough(courier_process: CourierProcess) -> None:
    c = courier_process
    key = c.new_key()
    c.env["COURIER_KEY"] = key
    c.start()
    registered = json.loads(c.cli("devices", "register", "pump-7-" + c.prefix).stdout)
    device_id = registered["id"]
    password = registered["credentials"]["password"]
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "courier",
            "simulate",
            "--device",
            device_id,
            "--password",
            password,
            "--latency",
            "20",
        ],
        env=c.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sent = c.cli(
            "send",
            "REBOOT",
            "--device",
            device_id,
            "--args",
            '{"delay": 1}',
            "--wait-timeout",
            "30",
        )
        results = json.loads(sent.stdout)
        assert [r["state"] for r in results] == ["SUCCEEDED"]
        assert results[0]["output"]["command"] == "REBOOT"
        shown = json.loads(c.cli("status", results[0]["id"]).stdout)
        assert [h["state"] for h in shown["history"]][-1] == "SUCCEEDED"
        listed = c.cli("devices", "list").stdout
        assert device_id in listed
        assert "online" in listed
        group = json.loads(c.cli("groups", "create", "pumps", "--device", device_id).stdout)
        by_group = json.loads(c.cli("send", "LOCK", "--group", group["id"]).stdout)
        assert [(r["device_id"], r["state"]) for r in by_group] == [(device_id, "SUCCEEDED")]
        assert "pumps" in c.cli("groups", "list").stdout
        failing = c.cli("send", "REBOOT", "--device", "no-such-device", check=False)
        assert failing.returncode == 2
        assert "unknown device ids: no-such-device" in failing.stderr
    finally:
        simulator.terminate()
        simulator.wait(10)
    assert c.terminate() == 0
    assert '"courier stopped"' in c.log_text()


def test_a_device_connected_before_registration_is_online_once_registered(
    courier_process: CourierProcess,
) -> None:
    c = courier_process
    c.env["COURIER_KEY"] = c.new_key()
    c.start()
    device_id = "early-" + c.prefix
    simulator = subprocess.Popen(
        [sys.executable, "-m", "courier", "simulate", "--device", device_id],
        env=c.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.5)  # connected and announced while Courier did not know it
        c.cli("devices", "register", device_id)
        deadline = time.monotonic() + 10
        while device_id + " " not in c.cli("devices", "list", "--online").stdout:
            assert time.monotonic() < deadline, "never seen online"
            time.sleep(0.1)
    finally:
        simulator.terminate()
        simulator.wait(10)
