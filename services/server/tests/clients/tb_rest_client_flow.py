"""A ThingsBoard script, unchanged in spirit: the flow a tb-rest-client user runs against a fresh
server. Run by services/server/tests/it/clients.rs with the pinned client of each generation:

    python tb_rest_client_flow.py BASE_URL SYSADMIN_EMAIL SYSADMIN_PASSWORD

Exits non-zero (with the client's exception) on the first incompatibility.
"""
import sys
import uuid

# Imported as each generation's own examples do: the client module re-exports its models.
try:  # 4.3: the classic CE client
    from tb_rest_client.rest_client_ce import *  # noqa: F401,F403
    from tb_rest_client.rest_client_ce import RestClientCE as Client
    GENERATION = "4.3"
except ImportError:  # 4.4+
    from tb_rest_client.rest_client import *  # noqa: F401,F403
    from tb_rest_client.rest_client import RestClient as Client
    GENERATION = "4.4"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def field(item, name):
    """A field of an answer item: 4.3 hands back plain dicts, 4.4 models."""
    return item[name] if isinstance(item, dict) else getattr(item, name)


def main(base_url, sys_email, sys_password):
    suffix = uuid.uuid4().hex[:8]
    sysadmin = Client(base_url=base_url)
    sysadmin.login(username=sys_email, password=sys_password)

    tenant = sysadmin.save_tenant(Tenant(title=f"Script tenant {suffix}"))
    check(tenant.id.id, "tenant has an id")

    admin_email = f"admin-{suffix}@example.com"
    user = User(email=admin_email, authority="TENANT_ADMIN", tenant_id=tenant.id, customer_id=None)
    user = sysadmin.save_user(body=user, send_activation_mail=False)
    link = sysadmin.get_activation_link(user.id)
    # 4.3's client hands back the text body as "b'…'": strip what it wrapped around the token.
    token = str(link).split("activateToken=")[-1].strip("'\"")
    sysadmin.activate_user(body=ActivateUserRequest(activate_token=token, password="secret-pass-1"), send_activation_mail=False)

    admin = Client(base_url=base_url)
    admin.login(username=admin_email, password="secret-pass-1")

    # As ThingsBoard's own examples do: the device model wants its profile id.
    profile = admin.get_default_device_profile_info()
    profile_id = DeviceProfileId(id=profile.id.id, entity_type="DEVICE_PROFILE")
    device = admin.save_device(Device(name=f"Thermometer {suffix}", label="Room 1", device_profile_id=profile_id))
    check(device.name == f"Thermometer {suffix}", "device saved")
    check(device.device_profile_id is not None, "device has a profile")
    credentials = admin.get_device_credentials_by_device_id(device.id)
    check(credentials.credentials_type == "ACCESS_TOKEN" and len(credentials.credentials_id) == 20, "access token")

    # Attribute and time-series saves, every generated one: 4.4 sends their bodies as text/plain
    # (ThingsBoard reads them whatever the Content-Type), 4.3 as application/json.
    admin.save_device_attributes(device.id, "SERVER_SCOPE", {"floor": 3})
    admin.save_entity_attributes_v1(device.id, "SHARED_SCOPE", {"mode": "eco"})
    admin.save_entity_attributes_v2(device.id, "SERVER_SCOPE", {"room": "1a"})
    admin.save_entity_telemetry(device.id, "ANY", {"temperature": 21.5})
    admin.save_entity_telemetry_with_ttl(device.id, "ANY", 0, {"humidity": 40})
    attributes = {field(a, "key"): field(a, "value") for a in admin.get_attributes(device.id)}
    check(attributes == {"floor": 3, "mode": "eco", "room": "1a"}, f"attributes saved: {attributes}")
    latest = admin.get_latest_timeseries(device.id, keys="temperature,humidity")
    values = {k: str(field(points[0], "value")) for k, points in latest.items()}
    check(values == {"temperature": "21.5", "humidity": "40"}, f"telemetry saved: {latest}")

    page = admin.get_tenant_devices(page_size=10, page=0)
    check(page.total_elements == 1 and page.data[0].name == device.name, "device listed")
    if GENERATION == "4.4":
        check(admin.get_tenant_device(device_name=device.name).id.id == device.id.id, "device by name")

    asset = admin.save_asset(Asset(name=f"Building {suffix}", type="building"))
    relation = EntityRelation(_from=asset.id, to=device.id, type="Contains", type_group="COMMON")
    admin.save_relation(relation)
    found = admin.find_by_from(from_id=asset.id, relation_type="Contains") if GENERATION == "4.4" else None
    if found is not None:
        check(len(found) == 1, "relation found from the asset")

    customer = admin.save_customer(Customer(title=f"Customer {suffix}"))
    assigned = admin.assign_device_to_customer(customer.id, device.id)
    check(assigned.customer_id.id == customer.id.id, "device assigned")
    unassigned = admin.unassign_device_from_customer(device.id)
    check(unassigned.customer_id.id == "13814000-1dd2-11b2-8080-808080808080", "device unassigned")

    admin.delete_device(device.id)
    check(admin.get_tenant_devices(page_size=10, page=0).total_elements == 0, "device deleted")
    print(f"tb-rest-client {GENERATION}: ok")


if __name__ == "__main__":
    main(*sys.argv[1:4])
