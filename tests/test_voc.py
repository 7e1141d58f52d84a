"""The VOC 2007 reader on a small directory in the devkit's exact layout, written here."""

import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image
from voc_annotations import labels_from_annotations, read_annotation

from soundsup.voc import (
    VOC_CLASSES,
    VOCFormatError,
    check_known_md5,
    file_md5,
    load_images,
    load_packed_images,
    pack_images,
    read_labels,
    unpack_voc,
)

IDS = {"trainval": ["000005", "000007", "000009", "000012"], "test": ["000001", "000002", "000004"]}
SIZES = {"000005": (60, 40), "000007": (30, 50), "000009": (64, 64), "000012": (500, 375)}


def annotation_xml(objects):
    parts = ["<annotation><folder>VOC2007</folder>"]
    for name, difficult, box in objects:
        xmin, ymin, xmax, ymax = box
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


def expected_labels(split):
    """Image i of a split has class (3 i) mod 20 (label 1) and class (3 i + 1) mod 20 difficult only (0)."""
    labels = np.full((len(IDS[split]), 20), -1, dtype=np.int8)
    for row in range(len(IDS[split])):
        labels[row, (3 * row) % 20] = 1
        labels[row, (3 * row + 1) % 20] = 0
    return labels


def write_label_files(main, split, labels, crlf_every=2):
    for column, name in enumerate(VOC_CLASSES):
        ending = "\r\n" if column % crlf_every == 0 else "\n"
        # The devkit's files pad with spaces: "000005 -1" and "000007  1".
        lines = [
            f"{image_id} {int(labels[row, column]):2d}{ending}" for row, image_id in enumerate(IDS[split])
        ]
        (main / f"{name}_{split}.txt").write_bytes("".join(lines).encode())
    (main / f"{split}.txt").write_bytes("".join(f"{i}\r\n" for i in IDS[split]).encode())


@pytest.fixture()
def voc_root(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "Annotations").mkdir()
    for split in IDS:
        labels = expected_labels(split)
        write_label_files(main, split, labels)
        for row, image_id in enumerate(IDS[split]):
            width, height = SIZES.get(image_id, (48, 32))
            pixels = np.zeros((height, width, 3), dtype=np.uint8)
            pixels[..., 0] = 200
            pixels[..., 2] = 20 * row
            Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
            objects = [
                (VOC_CLASSES[(3 * row) % 20], 0, (1, 2, 10, 12)),
                (VOC_CLASSES[(3 * row + 1) % 20], 1, (3, 4, 5, 6)),
            ]
            (root / "Annotations" / f"{image_id}.xml").write_text(annotation_xml(objects))
    return root


def test_labels_round_trip(voc_root):
    for split in IDS:
        ids, labels = read_labels(voc_root, split)
        assert ids == IDS[split]
        assert labels.dtype == np.int8 and labels.shape == (len(ids), 20)
        np.testing.assert_array_equal(labels, expected_labels(split))


def test_class_files_in_another_order_are_aligned_by_id(voc_root):
    path = voc_root / "ImageSets" / "Main" / "dog_trainval.txt"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(reversed(lines)))
    ids, labels = read_labels(voc_root, "trainval")
    assert ids == IDS["trainval"]
    np.testing.assert_array_equal(labels, expected_labels("trainval"))


def test_class_order_is_the_devkit_order():
    assert VOC_CLASSES == tuple(sorted(VOC_CLASSES)) and len(VOC_CLASSES) == 20
    assert VOC_CLASSES[10] == "diningtable" and VOC_CLASSES[-1] == "tvmonitor"


def test_missing_label_file_is_named(voc_root):
    (voc_root / "ImageSets" / "Main" / "sofa_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="sofa_test.txt"):
        read_labels(voc_root, "test")


def test_bad_label_names_file_and_line(voc_root):
    path = voc_root / "ImageSets" / "Main" / "cat_trainval.txt"
    lines = path.read_text().splitlines()
    lines[2] = "000009  2"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(VOCFormatError, match=r"cat_trainval\.txt, line 3: label '2'"):
        read_labels(voc_root, "trainval")


def test_malformed_line_and_duplicate_id_are_named(voc_root):
    path = voc_root / "ImageSets" / "Main" / "cow_test.txt"
    path.write_text("000001 -1\n000002 -1 extra\n000004 1\n")
    with pytest.raises(VOCFormatError, match=r"cow_test\.txt, line 2"):
        read_labels(voc_root, "test")
    path.write_text("000001 -1\n000002 -1\n000002 1\n")
    with pytest.raises(VOCFormatError, match=r"cow_test\.txt, line 3: image id 000002 appears twice"):
        read_labels(voc_root, "test")


def test_ids_that_differ_between_classes_are_an_error(voc_root):
    path = voc_root / "ImageSets" / "Main" / "horse_test.txt"
    path.write_text("000001 -1\n000002 -1\n000099 1\n")
    with pytest.raises(VOCFormatError, match=r"horse_test\.txt: image ids differ"):
        read_labels(voc_root, "test")


def test_split_file_must_agree(voc_root):
    (voc_root / "ImageSets" / "Main" / "test.txt").write_text("000001\n000002\n")
    with pytest.raises(VOCFormatError, match=r"test\.txt: image ids differ"):
        read_labels(voc_root, "test")


def test_unknown_split_and_missing_root(voc_root, tmp_path):
    with pytest.raises(ValueError, match="split"):
        read_labels(voc_root, "validation")
    with pytest.raises(FileNotFoundError, match="not a VOC2007 root"):
        read_labels(tmp_path / "nowhere", "test")


def test_images_are_rgb_uint8_and_shrunk_to_max_side(voc_root):
    images = load_images(voc_root, IDS["trainval"], max_side=None)
    assert [image.shape for image in images] == [(40, 60, 3), (50, 30, 3), (64, 64, 3), (375, 500, 3)]
    assert all(image.dtype == np.uint8 for image in images)
    assert abs(int(images[0][..., 0].mean()) - 200) <= 3
    shrunk = load_images(voc_root, IDS["trainval"], max_side=100, n_threads=2)
    assert [image.shape for image in shrunk] == [(40, 60, 3), (50, 30, 3), (64, 64, 3), (75, 100, 3)]


def test_missing_and_corrupt_images_are_named(voc_root):
    (voc_root / "JPEGImages" / "000007.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000007.jpg"):
        load_images(voc_root, IDS["trainval"], max_side=500)
    (voc_root / "JPEGImages" / "000007.jpg").write_bytes(b"<html>not a jpeg</html>")
    with pytest.raises(VOCFormatError, match="000007.jpg"):
        load_images(voc_root, IDS["trainval"], max_side=500)
    whole = (voc_root / "JPEGImages" / "000012.jpg").read_bytes()
    (voc_root / "JPEGImages" / "000007.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(VOCFormatError, match="000007.jpg"):
        load_images(voc_root, ["000007"], max_side=500)
    with pytest.raises(ValueError, match="bad VOC image id"):
        load_images(voc_root, ["../000005"], max_side=500)


def test_packed_images_hold_the_same_pixels_decoded_once(voc_root):
    ids = IDS["trainval"]
    for max_side in (None, 100):
        images = load_images(voc_root, ids, max_side=max_side)
        packed = load_packed_images(voc_root, ids, max_side=max_side, n_threads=2)
        assert packed.pixels.shape == (4, *np.max([image.shape[:2] for image in images], axis=0), 3)
        assert packed.sizes.tolist() == [list(image.shape[:2]) for image in images]
        for index, (image, (height, width)) in enumerate(zip(images, packed.sizes, strict=True)):
            np.testing.assert_array_equal(packed.image(index), image)
            assert (
                packed.pixels[index, height:].max(initial=0)
                == packed.pixels[index, :, width:].max(initial=0)
                == 0
            )
        # one thread gives the same array and digest
        serial = load_packed_images(voc_root, ids, max_side=max_side, n_threads=1)
        np.testing.assert_array_equal(serial.pixels, packed.pixels)
        assert serial.digest == packed.digest == pack_images(images).digest


def test_the_digest_tells_any_pixel_or_size_apart():
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
        rng.integers(0, 256, (6, 4, 3), dtype=np.uint8),
    ]
    digest = pack_images(images).digest
    changed = [image.copy() for image in images]
    changed[1][5, 3, 2] ^= 1
    assert pack_images(changed).digest != digest
    assert pack_images(images[::-1]).digest != digest
    reshaped = [images[0].reshape(7, 5, 3), images[1]]  # the same bytes in another shape
    assert pack_images(reshaped).digest != digest
    with pytest.raises(ValueError, match="image 1: expected an"):
        pack_images([images[0], images[1].astype(np.float32)])
    with pytest.raises(ValueError, match="no images"):
        pack_images([])


def test_packed_loading_names_bad_files(voc_root):
    (voc_root / "JPEGImages" / "000009.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000009.jpg"):
        load_packed_images(voc_root, IDS["trainval"], max_side=500, n_threads=2)
    whole = (voc_root / "JPEGImages" / "000012.jpg").read_bytes()
    (voc_root / "JPEGImages" / "000009.jpg").write_bytes(whole[: len(whole) // 2])  # header intact
    with pytest.raises(VOCFormatError, match="000009.jpg"):
        load_packed_images(voc_root, IDS["trainval"], max_side=500, n_threads=2)
    (voc_root / "JPEGImages" / "000009.jpg").write_bytes(b"GIF89a not really")
    with pytest.raises(VOCFormatError, match="000009.jpg"):
        load_packed_images(voc_root, IDS["trainval"], max_side=500)
    with pytest.raises(ValueError, match="no image ids"):
        load_packed_images(voc_root, [], max_side=500)


def test_annotation_objects_agree_with_labels(voc_root):
    ids, labels = read_labels(voc_root, "test")
    for image_id, row in zip(ids, labels, strict=True):
        objects = read_annotation(voc_root, image_id)
        assert {item["name"] for item in objects} <= set(VOC_CLASSES)
        np.testing.assert_array_equal(labels_from_annotations(objects), row)
    first = read_annotation(voc_root, "000001")[0]
    assert first == {"name": "aeroplane", "difficult": False, "bbox": (1, 2, 10, 12)}
    with pytest.raises(FileNotFoundError, match="000003.xml"):
        read_annotation(voc_root, "000003")
    (voc_root / "Annotations" / "000002.xml").write_text("<annotation><object>")
    with pytest.raises(VOCFormatError, match="000002.xml"):
        read_annotation(voc_root, "000002")


def add_bytes(archive, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def test_unpack_merges_the_two_tarballs(tmp_path):
    trainval = tmp_path / "VOCtrainval.tar"
    test = tmp_path / "VOCtest.tar"
    with tarfile.open(trainval, "w") as archive:
        add_bytes(archive, "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt", b"000005\n")
        add_bytes(archive, "VOCdevkit/VOC2007/JPEGImages/000005.jpg", b"a")
    with tarfile.open(test, "w") as archive:
        add_bytes(archive, "VOCdevkit/VOC2007/ImageSets/Main/test.txt", b"000001\n")
        add_bytes(archive, "VOCdevkit/VOC2007/JPEGImages/000001.jpg", b"b")
    root = unpack_voc([trainval, test], tmp_path / "voc")
    assert root == tmp_path / "voc" / "VOCdevkit" / "VOC2007"
    assert (root / "ImageSets" / "Main" / "trainval.txt").read_text() == "000005\n"
    assert (root / "ImageSets" / "Main" / "test.txt").read_text() == "000001\n"
    assert sorted(p.name for p in (root / "JPEGImages").iterdir()) == ["000001.jpg", "000005.jpg"]
    assert [p.name for p in (tmp_path / "voc").iterdir()] == ["VOCdevkit"]  # no scratch folder left
    unpack_voc([trainval], tmp_path / "voc")  # a rerun overwrites in place


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/escape.txt", "VOCdevkit/../../escape.txt"])
def test_unpack_rejects_members_outside_the_destination(tmp_path, member):
    tar_path = tmp_path / "evil.tar"
    with tarfile.open(tar_path, "w") as archive:
        add_bytes(archive, "VOCdevkit/VOC2007/ImageSets/Main/test.txt", b"1\n")
        add_bytes(archive, member, b"x")
    with pytest.raises(VOCFormatError, match="unsafe member"):
        unpack_voc([tar_path], tmp_path / "voc")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "voc" / "VOCdevkit").exists()


def test_unpack_rejects_links_and_foreign_archives(tmp_path):
    tar_path = tmp_path / "link.tar"
    with tarfile.open(tar_path, "w") as archive:
        info = tarfile.TarInfo("VOCdevkit/VOC2007/JPEGImages/000001.jpg")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    with pytest.raises(VOCFormatError, match="not a regular file"):
        unpack_voc([tar_path], tmp_path / "voc")
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as archive:
        add_bytes(archive, "photos/1.jpg", b"x")
    with pytest.raises(VOCFormatError, match="not the VOC 2007 tarballs"):
        unpack_voc([other], tmp_path / "voc2")
    (tmp_path / "html.tar").write_text("<html>error page</html>")
    with pytest.raises(VOCFormatError, match="not a readable tar"):
        unpack_voc([tmp_path / "html.tar"], tmp_path / "voc3")
    with pytest.raises(FileNotFoundError, match="absent.tar"):
        unpack_voc([tmp_path / "absent.tar"], tmp_path / "voc4")


def test_md5_of_official_names_is_checked(tmp_path):
    fake = tmp_path / "VOCtest_06-Nov-2007.tar"
    fake.write_bytes(b"not the real tarball")
    assert file_md5(fake) == hashlib.md5(b"not the real tarball").hexdigest()
    with pytest.raises(VOCFormatError, match="b6e924de25625d8de591ea690078ad9f"):
        check_known_md5(fake)
    other = tmp_path / "mirror.tar"
    other.write_bytes(b"anything")
    check_known_md5(other)  # unknown name: nothing to compare with


def test_the_fetch_voc07_adapter_fetches_unpacks_and_checks_the_official_md5(tmp_path):
    """Rule fetch_voc07 with a stand-in job against a loopback server: the two tarballs are
    fetched (checksums as configured), unpacked into voc.root; a tarball under an official
    name whose MD5 is not the official one is refused, naming it."""
    import hashlib

    from adapter_helpers import Job, run_adapter
    from httpserver import MediaServer

    from soundsup.voc import VOC07_MD5

    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "VOCtrainval.tar", "w") as archive:
        add_bytes(archive, "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt", b"000005\n")
        add_bytes(archive, "VOCdevkit/VOC2007/JPEGImages/000005.jpg", b"a")
    with tarfile.open(served / "VOCtest.tar", "w") as archive:
        add_bytes(archive, "VOCdevkit/VOC2007/ImageSets/Main/test.txt", b"000001\n")
        add_bytes(archive, "VOCdevkit/VOC2007/JPEGImages/000001.jpg", b"b")
    official = sorted(VOC07_MD5)[0]
    (served / official).write_bytes((served / "VOCtest.tar").read_bytes())
    root = tmp_path / "resources" / "voc" / "VOCdevkit" / "VOC2007"

    def job(names):
        return Job(
            input=Job(),
            output=Job(
                voc=[str(root / "ImageSets" / "Main" / f"{split}.txt") for split in ("trainval", "test")]
            ),
            params=Job(
                urls=[server.url(name) for name in names],
                sha256=[hashlib.sha256((served / name).read_bytes()).hexdigest() for name in names],
                voc_root=str(root),
                tar_dir=str(tmp_path / "resources" / "voc" / "tar"),
            ),
            wildcards=Job(),
            log=[str(tmp_path / "fetch_voc07.log")],
            rule="fetch_voc07",
            threads=1,
        )

    with MediaServer(served, {}) as server:
        run_adapter("fetch_voc07", job(["VOCtrainval.tar", "VOCtest.tar"]))
        assert (root / "ImageSets" / "Main" / "test.txt").read_text() == "000001\n"
        assert sorted(p.name for p in (root / "JPEGImages").iterdir()) == ["000001.jpg", "000005.jpg"]
        with pytest.raises(VOCFormatError, match=rf"{official}: MD5 .* differs from the official"):
            run_adapter("fetch_voc07", job(["VOCtrainval.tar", official]))
