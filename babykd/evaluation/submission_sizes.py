"""Item counts a BabyLM 2025 submission file must have: facts the official collate step asserts.

``babylm/evaluation-pipeline-2025``'s ``collate_preds.py`` refuses to write the
submission unless every task's predictions have exactly these counts (per
subtask where the task has subtasks; subtask names compared in lower case) and
the AoA surprisals cover the track's revisions with `AOA_CONTEXTS` records
each. The tables below are those facts, restated as data (the per-subtask
counts are the line counts of the released evaluation files, which
``tests/test_submission_check.py`` recounts); `babykd.evaluation.submission_check`
is our own check built on them.
"""

from __future__ import annotations

#: BLiMP (filtered): UID (lower case) -> items.
BLIMP: dict[str, int] = {
    "adjunct_island": 928, "anaphor_gender_agreement": 971, "anaphor_number_agreement": 931,
    "animate_subject_passive": 895, "animate_subject_trans": 923, "causative": 818, "complex_np_island": 846,
    "coordinate_structure_constraint_complex_left_branch": 906,
    "coordinate_structure_constraint_object_extraction": 949, "determiner_noun_agreement_1": 929,
    "determiner_noun_agreement_2": 931, "determiner_noun_agreement_irregular_1": 681,
    "determiner_noun_agreement_irregular_2": 820, "determiner_noun_agreement_with_adj_2": 941,
    "determiner_noun_agreement_with_adj_irregular_1": 718, "determiner_noun_agreement_with_adj_irregular_2": 840,
    "determiner_noun_agreement_with_adjective_1": 933, "distractor_agreement_relational_noun": 788,
    "distractor_agreement_relative_clause": 871, "drop_argument": 920, "ellipsis_n_bar_1": 802,
    "ellipsis_n_bar_2": 828, "existential_there_object_raising": 812, "existential_there_quantifiers_1": 930,
    "existential_there_quantifiers_2": 911, "existential_there_subject_raising": 924,
    "expletive_it_object_raising": 759, "inchoative": 855, "intransitive": 868,
    "irregular_past_participle_adjectives": 961, "irregular_past_participle_verbs": 942,
    "irregular_plural_subject_verb_agreement_1": 804, "irregular_plural_subject_verb_agreement_2": 892,
    "left_branch_island_echo_question": 947, "left_branch_island_simple_question": 951,
    "matrix_question_npi_licensor_present": 929, "npi_present_1": 909, "npi_present_2": 914,
    "only_npi_licensor_present": 882, "only_npi_scope": 837, "passive_1": 840, "passive_2": 903,
    "principle_a_c_command": 946, "principle_a_case_1": 912, "principle_a_case_2": 915, "principle_a_domain_1": 914,
    "principle_a_domain_2": 915, "principle_a_domain_3": 941, "principle_a_reconstruction": 967,
    "regular_plural_subject_verb_agreement_1": 890, "regular_plural_subject_verb_agreement_2": 945,
    "sentential_negation_npi_licensor_present": 919, "sentential_negation_npi_scope": 871,
    "sentential_subject_island": 961, "superlative_quantifiers_1": 979, "superlative_quantifiers_2": 986,
    "tough_vs_raising_1": 948, "tough_vs_raising_2": 920, "transitive": 868, "wh_island": 960,
    "wh_questions_object_gap": 859, "wh_questions_subject_gap": 898, "wh_questions_subject_gap_long_distance": 857,
    "wh_vs_that_no_gap": 861, "wh_vs_that_no_gap_long_distance": 875, "wh_vs_that_with_gap": 919,
    "wh_vs_that_with_gap_long_distance": 910,
}
#: BLiMP supplement: subtask -> items.
SUPPLEMENT: dict[str, int] = {
    "hypernym": 842, "qa_congruence_easy": 64, "qa_congruence_tricky": 165, "subject_aux_inversion": 3867,
    "turn_taking": 280,
}
#: EWoK (filtered): domain -> items.
EWOK: dict[str, int] = {
    "agent-properties": 2210, "material-dynamics": 770, "material-properties": 170, "physical-dynamics": 120,
    "physical-interactions": 556, "physical-relations": 818, "quantitative-properties": 314,
    "social-interactions": 294, "social-properties": 328, "social-relations": 1548, "spatial-relations": 490,
}
#: Entity tracking: <split>_<numops>_ops -> items.
ENTITY_TRACKING: dict[str, int] = {
    "regular_0_ops": 606, "regular_1_ops": 607, "regular_2_ops": 606, "regular_3_ops": 606, "regular_4_ops": 568,
    "regular_5_ops": 159, "ambiref_0_ops": 607, "ambiref_1_ops": 607, "ambiref_2_ops": 604, "ambiref_3_ops": 604,
    "ambiref_4_ops": 615, "ambiref_5_ops": 187, "move_contents_0_ops": 605, "move_contents_1_ops": 606,
    "move_contents_2_ops": 605, "move_contents_3_ops": 606, "move_contents_4_ops": 529, "move_contents_5_ops": 156,
}
#: COMPS (its data is not distributed with the 2025 zip): subtask -> items.
COMPS: dict[str, int] = {"base": 49340, "wugs": 13896, "wugs_dist_before": 13896, "wugs_dist_in_between": 13896}
#: Tasks whose single subtask (whatever its name) has a fixed item count.
SINGLE = {"wug_adj": 200, "wug_past": 50, "reading": 1726}
#: Final-model parts: submission key -> subtask -> items (a dict) or items of every subtask (an int).
FULL: dict[str, dict[str, int] | int] = {
    "blimp": BLIMP, "blimp_supplement": SUPPLEMENT, "ewok": EWOK, "entity_tracking": ENTITY_TRACKING,
    "comps": COMPS, **SINGLE,
}
#: (Super)GLUE validation sets: task -> predictions.
GLUE: dict[str, int] = {"boolq": 1635, "mnli": 4908, "mrpc": 204, "multirc": 2424, "qqp": 20215, "rte": 139, "wsc": 52}
#: AoA: surprisal records per revision (504 CDI words' CHILDES contexts).
AOA_CONTEXTS = 8005
#: Fast evaluation: the subtasks each revision's metrics must name (entity tracking: the regular split only).
FAST_SUBTASKS: dict[str, frozenset[str]] = {
    "blimp": frozenset(BLIMP), "blimp_supplement": frozenset(SUPPLEMENT), "ewok": frozenset(EWOK),
    "entity_tracking": frozenset(k for k in ENTITY_TRACKING if k.startswith("regular_")),
}
