"""Adapter of rule fetch_voc07: the official VOC 2007 tarballs, checked and unpacked."""

from pathlib import Path

from _common import run


def main(snakemake) -> None:
    from soundsup.fetch import fetch_url
    from soundsup.voc import check_known_md5, unpack_voc

    tar_dir = Path(snakemake.params.tar_dir)
    tars = [
        fetch_url(url, tar_dir / url.rsplit("/", 1)[-1], sha256=sha256)
        for url, sha256 in zip(snakemake.params.urls, snakemake.params.sha256, strict=True)
    ]
    for tar in tars:
        check_known_md5(tar)  # the official tarballs' MD5, whatever the configured sha256
    voc_root = Path(snakemake.params.voc_root)
    unpacked = unpack_voc(tars, voc_root.parent.parent)
    if unpacked.resolve() != voc_root.resolve():
        raise RuntimeError(f"the tarballs unpacked to {unpacked}, but voc.root is {voc_root}")
    for marker in snakemake.output.voc:
        if not Path(marker).exists():
            raise FileNotFoundError(f"{marker} is missing after unpacking {', '.join(map(str, tars))}")


run(main, snakemake)  # noqa: F821
