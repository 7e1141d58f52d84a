# soundsup: teach a CNN to see by listening.
# The DAG and its file contract are described in README.md; every rule lives in rules/.
from snakemake.utils import min_version

min_version("9.0")


# config.yaml (the paper) unless --configfile names another: each config stands alone, on top
# of the schema's defaults, so a demo or test config never inherits paper-scale values.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/world.smk"
include: "rules/acquire.smk"
include: "rules/features.smk"
include: "rules/pretext.smk"
include: "rules/voc.smk"
include: "rules/results.smk"
include: "rules/evaluate.smk"


rule all:
    default_target: True
    input:
        TABLES,
        FIGURES,
        FROZEN_TABLES,
        FROZEN_FIGURES,
        kept_voc_models(),
        "results/dataset.csv",
