"""ThingsBoard's Python device SDK (tb-mqtt-client, MQTT 5, empty client id, QoS 1) against
Thinglake: connect (which asks for the session limits), send telemetry and attributes and wait
for each PUBACK. Usage: tb_mqtt_client_flow.py HOST PORT TOKEN. Exits non-zero on failure."""

import sys
import time

from tb_device_mqtt import TBDeviceMqttClient, TBPublishInfo


def main() -> None:
    host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    client = TBDeviceMqttClient(host, port=port, username=token)
    client.connect(timeout=20)
    deadline = time.time() + 20
    while not client.is_connected():
        if time.time() > deadline:
            sys.exit("not connected")
        time.sleep(0.05)
    rc = client.send_telemetry({"sdk_temperature": 36.6}).get()
    if rc != TBPublishInfo.TB_ERR_SUCCESS:
        sys.exit(f"send_telemetry answered {rc}")
    rc = client.send_attributes({"sdk_version": "1.13.14"}).get()
    if rc != TBPublishInfo.TB_ERR_SUCCESS:
        sys.exit(f"send_attributes answered {rc}")
    client.disconnect()
    print("ok")


if __name__ == "__main__":
    main()
