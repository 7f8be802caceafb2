"""The 13 BBBC021 mechanism-of-action classes and their compounds.

Class index = position in `MOA_CLASSES`. DMSO (the neutral control) is last so
that the 12-class protocol is simply `MOA_CLASSES[:12]`.
"""

MOA_CLASSES = (
    "Actin disruptors",
    "Aurora kinase inhibitors",
    "Cholesterol-lowering",
    "DNA damage",
    "DNA replication",
    "Eg5 inhibitors",
    "Epithelial",
    "Kinase inhibitors",
    "Microtubule destabilizers",
    "Microtubule stabilizers",
    "Protein degradation",
    "Protein synthesis",
    "DMSO",
)
NUM_CLASSES = len(MOA_CLASSES)
DMSO = "DMSO"

COMPOUNDS_BY_CLASS = {
    "Actin disruptors": ("cytochalasin B", "cytochalasin D", "latrunculin B"),
    "Aurora kinase inhibitors": ("AZ258", "AZ841", "AZ-A"),
    "Cholesterol-lowering": ("mevinolin/lovastatin", "simvastatin"),
    "DNA damage": ("chlorambucil", "cisplatin", "etoposide", "mitomycin C"),
    "DNA replication": ("camptothecin", "floxuridine", "methotrexate",
                        "mitoxantrone"),
    "Eg5 inhibitors": ("AZ138", "AZ-C"),
    "Epithelial": ("AZ-J", "AZ-U", "PP-2"),
    "Kinase inhibitors": ("alsterpaullone", "bryostatin", "PD-169316"),
    "Microtubule destabilizers": ("colchicine", "demecolcine", "nocodazole",
                                  "vincristine"),
    "Microtubule stabilizers": ("docetaxel", "epothilone B", "taxol"),
    "Protein degradation": ("ALLN", "lactacystin", "MG-132",
                            "proteasome inhibitor I"),
    "Protein synthesis": ("anisomycin", "cyclohexamide", "emetine"),
    DMSO: (DMSO,),
}


def class_index(name):
    """Returns the label of a class name; raises ValueError naming it."""
    try:
        return MOA_CLASSES.index(name)
    except ValueError:
        raise ValueError(f"unknown mechanism-of-action class {name!r}; "
                         f"expected one of {list(MOA_CLASSES)}") from None
