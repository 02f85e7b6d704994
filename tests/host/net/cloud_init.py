#!/usr/bin/python3
"""cloud-init's own Ec2 datasource (Debian's cloud-init 22.4 modules,
unpacked, unmodified) run in a stand-in guest: does it detect the metadata
service at 169.254.169.254, and what does it read?

    cloud_init.py DIST_PACKAGES WORKDIR

Prints one JSON object: found, cloud_name, api_version, token (whether it
used the IMDSv2 token flow), instance_id, hostname, availability_zone,
network (its network config v2). Exits 0 whether or not it found the
service: the caller decides what is expected.
"""
import json
import logging
import os
import sys

sys.path.insert(0, sys.argv[1])
work = sys.argv[2]

from cloudinit import distros, helpers  # noqa: E402
from cloudinit import log as cloudinit_log  # noqa: E402
from cloudinit.sources import DataSourceEc2 as ec2  # noqa: E402

# cloud-init's own log set-up (its handlers replace basicConfig's).
cloudinit_log.setupBasicLogging(logging.DEBUG)
os.makedirs(f"{work}/cloud", exist_ok=True)
os.makedirs(f"{work}/run", exist_ok=True)
paths = helpers.Paths({"cloud_dir": f"{work}/cloud", "run_dir": f"{work}/run"})
# Only the address mvm serves (the defaults add an IPv6 one and a DNS
# name), and short waits: a refusal should fail in seconds, not minutes.
sys_cfg = {
    "datasource": {
        "Ec2": {
            "metadata_urls": ["http://169.254.169.254"],
            "timeout": 2,
            "max_wait": 6,
            "retries": 1,
        }
    }
}
distro = distros.fetch("debian")("debian", {}, paths)
ds = ec2.DataSourceEc2(sys_cfg, distro, paths)
found = bool(ds.get_data())
out = {"found": found, "cloud_name": ds.cloud_name, "token": ds._api_token is not None}
if found:
    out.update(
        api_version=ds._crawled_metadata.get("_metadata_api_version"),
        instance_id=ds.get_instance_id(),
        hostname=ds.get_hostname().hostname,
        availability_zone=ds.availability_zone,
        network=ds.network_config,
    )
print(json.dumps(out, sort_keys=True))
