"""The injection check's phrase patterns, weights and trigger words, over normalised (lower-case, accent-free) text."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pattern:
    """One signal: a regex over normalised text, its weight, and the substrings that must occur for it to run.

    `imperative` marks commands ("ignore ..."): outside the imperative mood (reported speech, a
    third-person subject) they count half, see injection._discount.
    """

    name: str
    weight: float
    regex: re.Pattern[str]
    triggers: tuple[str, ...]
    imperative: bool = False


def _p(name: str, weight: float, regex: str, triggers: str, *, imperative: bool = False) -> Pattern:
    return Pattern(name, weight, re.compile(regex), tuple(triggers.split("|")), imperative)


# Determiners and modifiers that may stand between an override verb and its object, and the objects
# that make it an override: "ignore [all the previous] instructions", "forget [your] rules".
_MODS = (
    r"(?:(?:all|any|every|each|the|your|my|these|those|of|previous|prior|above|earlier|preceding|initial|original"
    r"|old|current|existing|given|system|developer|safety|content|default|ethical|other|above-mentioned)\s+)*"
)
_OBJECTS = (
    r"(?:instructions?|directions?|rules|guidelines|prompts?|context|commands|guidance|constraints|restrictions"
    # "the rules of chess" are not the model's
    r"|programming|training|polic(?:y|ies)|filters|directives|orders)\b(?!\s+of\b)"
)
_LIMITS = (
    r"(?:restrictions?|rules|limits|limitations|filters?|guidelines|censorship|ethics|morals|boundaries|constraints"
    r"|content\s+polic(?:y|ies)|polic(?:y|ies)|safeguards|guardrails)\b"
)
_PERSONA_LEAD = (
    r"\b(?:pretend|act\s+(?:as|like)|acting\s+as|roleplay|role-play|role\s+play|play\s+the\s+role|behave\s+(?:as|like)"
    r"|respond\s+as|reply\s+as|answer\s+as|you\s+are|you're|you\s+will\s+be|become|imagine\s+(?:you|that\s+you)"
    r"|if\s+you\s+(?:had|have|were)|stay\s+in\s+character)\b"
)
_UNRESTRICTED = (
    r"(?:\b(?:no|without|free\s+(?:of|from)|not\s+bound\s+by|never\s+(?:been\s+)?trained\s+with|zero|ignores?\s+all)"
    r"\s+(?:(?:any|all)\s+)?(?:\w+\s+)?"
    + _LIMITS
    + r"|\b(?:unrestricted|uncensored|unfiltered|unlimited|amoral|unethical|evil)"
    r"\s+(?:\w+\s+)?(?:ai|assistant|model|chatbot|bot|version|mode|llm)\b)"
)
_LIMIT_TRIGGERS = (
    "restrict|rules|limit|filter|guideline|censor|ethic|moral|boundar|constraint|polic|safeguard|guardrail|evil"
)

PATTERNS: tuple[Pattern, ...] = (
    # ------------------------------------------------------------------ override phrases
    _p(
        "override phrase",
        0.85,
        r"\b(?:ignore|disregard|forget|override|bypass|set\s+aside|put\s+aside|discard|abandon|drop)\s+"
        + _MODS
        + _OBJECTS,
        "ignor|disregard|forget|overrid|bypass|aside|discard|abandon|drop",
        imperative=True,
    ),
    _p(
        "override phrase",
        0.85,
        r"\b(?:ignore|disregard|forget)\s+(?:(?:the|all|of|everything|anything|what)\s+)*"
        r"(?:(?:(?:you\s+(?:were|have\s+been)|you've\s+been|i)\s+)?(?:said|told|written|given|stated)\s+)?"
        r"(?:above|before|previously|earlier|prior|so\s+far)\b",
        "ignor|disregard|forget",
        imperative=True,
    ),
    _p(
        "override phrase",
        0.85,
        r"\b(?:ignora|ignorar|olvida|olvidate\s+de|descarta|omite)\s+(?:(?:todas|todos|las|los|tus|sus|de|del)\s+)*"
        r"(?:instrucciones|reglas|indicaciones|normas|directrices|ordenes)\b",
        "ignora|olvida|descarta|omite",
        imperative=True,
    ),
    _p(
        "override phrase",
        0.85,
        r"\b(?:ignore|ignorez|ignorer|oublie|oubliez|oublier)\s+(?:(?:toutes|tous|les|tes|vos|des)\s+)*"
        r"(?:instructions|consignes|regles|directives|indications)\b",
        "ignor|oubli",
        imperative=True,
    ),
    _p(
        "override phrase",
        0.85,
        r"\b(?:ignoriere|ignorier|ignorieren\s+sie|vergiss|vergessen\s+sie)\s+"
        r"(?:(?:alle|die|deine|ihre|jegliche|vorherigen|bisherigen|obigen|vorigen|fruheren|vorangegangenen)\s+)*"
        r"(?:anweisungen|instruktionen|regeln|vorgaben|richtlinien|befehle)\b",
        "ignorier|vergiss|vergessen",
        imperative=True,
    ),
    _p(
        "override phrase",
        0.85,
        r"\b(?:olvida|ignora)\s+todo\s+lo\s+(?:anterior|que\s+(?:te\s+)?(?:dije|dijeron|han\s+dicho))"
        r"|\b(?:oublie|oubliez|ignore|ignorez)\s+tout\s+ce\s+(?:qui\s+precede|qu'on\s+t'a\s+dit|que\s+je\s+t'ai\s+dit)"
        r"|\bne\s+(?:tiens|tenez)\s+pas\s+compte\s+(?:des|de\s+tes|de\s+vos)\s+(?:instructions|consignes|regles)"
        r"|\bvergiss\s+alles,?\s+was\s+(?:dir|man\s+dir|ich\s+dir)\s+(?:vorher\s+|bisher\s+|zuvor\s+)?"
        r"(?:gesagt|befohlen|aufgetragen)",
        "olvida|ignora|oubli|ignor|compte|vergiss",
    ),
    _p(
        "instructions void",
        0.7,
        r"\b(?:your\s+)?(?:previous|prior|original|old|earlier)\s+(?:instructions|rules|guidelines|prompt)\s+"
        r"(?:are|is)\s+(?:now\s+)?(?:void|cancel+ed|null|obsolete|revoked|no\s+longer\s+valid|overridden)\b",
        "void|cancel|null|obsolete|revoked|no longer valid|overridden",
    ),
    _p(
        "new instructions",
        0.7,
        r"\b(?:your\s+)?new\s+(?:system\s+)?(?:instructions?|directives?|system\s+prompt|prompt)\s*(?:are\b|is\b|:)"
        r"|\bnew\s+(?:system\s+)?instructions?\s+(?:for|to)\s+(?:the\s+)?(?:ai|assistant|model|llm|chatbot|bot|agent)\b",
        "new instruction|new system|new prompt|new directive",
    ),
    _p(
        "policy defiance",
        0.75,
        r"\b(?:do\s+not|don't|stop|no\s+longer)\s+(?:follow|obey|adhere\s+to|comply\s+with|respect)(?:ing)?\s+"
        r"(?:your|the|any)\s+(?:\w+\s+)?(?:rules|guidelines|polic(?:y|ies)|instructions|programming|restrictions)\b",
        "follow|obey|adhere|comply|respect",
    ),
    _p(
        "safety off",
        0.75,
        r"\b(?:bypass|disable|turn\s+off|deactivate|remove|circumvent|override)\s+(?:(?:all|your|the|any)\s+)*"
        r"(?:(?:safety|content)\s+)?(?:filters?|guidelines|guardrails|safeguards|restrictions|protocols|moderation)\b",
        "bypass|disabl|turn off|deactivat|remov|circumvent|overrid",
        imperative=True,
    ),
    _p(
        "safety off",
        0.75,
        r"\b(?:safety|content)\s+(?:protocols|filters|guidelines|restrictions)\s+(?:are\s+)?(?:now\s+)?"
        r"(?:disabled|off|removed|lifted|deactivated)\b",
        "disabled|off|removed|lifted|deactivated",
    ),
    _p(
        "no longer an assistant",
        0.6,
        r"\bstop\s+being\s+an?\s+(?:ai|assistant|language\s+model)|\byou\s+are\s+no\s+longer\s+"
        r"(?:an?\s+ai|chatgpt|claude|an?\s+assistant|bound|restricted|limited)|\bno\s+longer\s+bound\s+by\b",
        "no longer|stop being",
    ),
    # ------------------------------------------------------------------ personas and jailbreak modes
    _p(
        "DAN persona",
        0.85,
        r"\bdo\s+anything\s+now\b|\b(?:you\s+are|you're|be|as|called|named|eres|tu\s+es|du\s+bist)\s+(?:now\s+)?dan\b"
        r"|\bdan\s+(?:mode|has\s+no|ignores|can\s+do|doesn't|does\s+not|is\s+free)\b",
        "dan",
    ),
    _p(
        "developer mode",
        0.4,
        r"\b(?:enable|activate|enter|simulate|switch\s+(?:to|into)|turn\s+on|go\s+into)\s+(?:the\s+)?developer\s+mode\b",
        "developer mode",
    ),
    _p(
        "developer mode output",
        0.4,
        r"\bdeveloper\s+mode\s+(?:enabled|activated|output|response)\b|\bin\s+developer\s+mode,?\s+you\b",
        "developer mode",
    ),
    _p(
        "jailbreak mode",
        0.8,
        r"\bjailbreak\s+mode\b|\bjailbroken\b|\byou\s+are\s+(?:now\s+)?(?:free|unchained|liberated|unleashed)\b",
        "jailbr|unchained|liberated|unleashed|are now free|are free",
    ),
    _p(
        "special mode",
        0.4,
        r"\b(?:sudo|god|admin|maintenance|unrestricted|debug)\s+mode\s+(?:activated|enabled|on)\b"
        r"|\byou\s+are\s+(?:now\s+)?in\s+(?:sudo|god|admin|maintenance|unrestricted|debug)\s+mode\b",
        "sudo mode|god mode|admin mode|maintenance mode|unrestricted mode|debug mode",
    ),
    _p("unrestricted persona", 0.75, _PERSONA_LEAD + r"[^.!?\n]{0,80}?" + _UNRESTRICTED, _LIMIT_TRIGGERS),
    _p(
        "unrestricted persona",
        0.75,
        r"\b(?:responde|actua|eres|se|sois|agis|agissez|reponds|repondez|tu\s+es|antworte|antworten|handle|sei"
        r"|du\s+bist)\b[^.!?\n]{0,60}?\b(?:sin\s+(?:ninguna\s+)?|no\s+tienes\s+|sans\s+(?:aucune?\s+)?"
        r"|ohne\s+(?:jegliche\s+|irgendwelche\s+)?)(?:restriccion(?:es)?|reglas|filtros|limites|censura|restrictions?"
        r"|regles|filtres|censure|einschrankungen|regeln|filter|grenzen|zensur)\b",
        "restriccion|reglas|filtro|limite|censura|restriction|regles|filtre|censure|einschrankung|regeln|filter|grenzen"
        "|zensur",
    ),
    _p(
        "grandma exploit",
        0.6,
        r"\b(?:deceased|late|dead)\s+(?:grandmother|grandma|granny|grandfather|grandpa)\b[^.!?\n]{0,80}\bused\s+to\b",
        "grandm|granny|grandf|grandpa",
    ),
    # ------------------------------------------------------------------ system prompt impersonation and extraction
    _p(
        "system impersonation",
        0.6,
        r"(?:^|\n|[.!?]\s+|\[|<|\(|#\s*)\s*(?:system|sys)(?:\s+(?:prompt|message|instructions?|override))?\s*[\]>):]"
        r"|\bsystem\s+(?:prompt\s+)?override\b",
        "system|sys]|sys>",
    ),
    _p(
        "chat template token",
        0.6,
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext)\|>|</?(?:user|assistant|system)>|\[/?inst\]"
        r"|<<sys>>|###\s*(?:instruction|system|response)\b",
        "<|||</|<system|<user|<assistant|[inst|[/inst|<<sys|###",
    ),
    _p(
        "prompt extraction",
        0.75,
        r"\b(?:reveal|show|print|output|display|repeat|dump|leak|tell\s+me|give\s+me|share|write\s+out|what\s+(?:is|are))"
        r"\s+(?:me\s+)?(?:your|the)\s+(?:(?:full|exact|entire|complete|verbatim)\s+)?"
        r"(?:(?:system|hidden|secret|initial|original|developer|first|pre)[\s-]+(?:prompt|message|instructions?)"
        r"|system\s*prompt|prompt)\b",
        "prompt|instruction|message",
    ),
    _p(
        "prompt extraction",
        0.75,
        r"\b(?:muestra|revela|dime|revele|affiche|montre|donne|gib|zeig|nenne)\w*\s+(?:moi\s+|mir\s+)?"
        r"(?:tu|ton|votre|deinen|dein|el|le|den)\s+(?:prompt\s+(?:del\s+sistema|systeme|de\s+sistema)|system-?prompt)",
        "prompt",
    ),
    _p(
        "prompt extraction",
        0.7,
        r"\b(?:repeat|print|output|show|reproduce|copy)\s+(?:(?:the|all|everything|all\s+the)\s+)*"
        r"(?:text|words|content|messages?|everything|instructions)?\s*(?:(?:written|said|stated)\s+)?"
        r"(?:above|before\s+this)\b",
        "above|before this",
    ),
    _p(
        "prompt extraction",
        0.75,
        r"\b(?:reveal|show|print|output|display|repeat|dump|leak|list|share|quote)\b[^.!?\n]{0,40}?\byour\s+"
        r"(?:(?:full|exact|entire|complete|original|initial|hidden|secret|system)\s+)*(?:system\s+)?prompt\b",
        "prompt",
    ),
    _p(
        "prompt extraction",
        0.6,
        r"\bwhat\s+(?:were|was)\s+you\s+(?:told|instructed|given|asked)\b"
        r"|\bwhat\s+(?:instructions|rules|prompt)\s+(?:were|have)\s+you\s+(?:been\s+)?(?:given|told)\b"
        r"|\bwhat(?:'s|\s+is)\s+in\s+your\s+(?:system\s+)?prompt\b|\b(?:print|repeat|output|show)\s+(?:me\s+)?"
        r"your\s+(?:initial|original|first|starting|hidden)\s+(?:instructions|prompt|message)",
        "you told|you instructed|you given|you asked|you been|in your|your initial|your original|your first"
        "|your starting|your hidden",
    ),
    _p(
        "override phrase",
        0.7,
        r"\b(?:ignore|disregard)\s+(?:what\s+)?the\s+user(?:'s)?\s+(?:request|question|message|input|instructions?"
        r"|says|said|asked)\b",
        "ignor|disregard",
        imperative=True,
    ),
    _p(
        "spaced-out override",
        0.6,
        r"\b(?:i\s+g\s+n\s+o\s+r\s+e|d\s+i\s+s\s+r\s+e\s+g\s+a\s+r\s+d|f\s+o\s+r\s+g\s+e\s+t)\b",
        "i g n o r e|d i s r e g a r d|f o r g e t",
    ),
    _p(
        "two answers",
        0.5,
        r"\b(?:two|2|dual|both)\s+(?:different\s+)?(?:answers|responses|replies|outputs)\b[^.!?\n]{0,60}?"
        r"\b(?:uncensored|unfiltered|developer\s+mode|jailbr\w*|dan)\b",
        "answers|responses|replies|outputs",
    ),
    _p(
        "refusal suppression",
        0.45,
        r"\b(?:never|don't|do\s+not|without|stop)\s+refus\w*|\bmust\s+(?:answer|comply\s+with)\s+(?:every|all|any)\b",
        "refus|must answer|must comply",
    ),
    _p(
        "harm waiver",
        0.45,
        r"\beven\s+(?:the\s+)?(?:harmful|dangerous|illegal|unethical)\s+ones\b"
        r"|\beven\s+if\s+(?:it's|it\s+is|they\s+are)\s+(?:harmful|dangerous|illegal|unethical)\b",
        "harmful|dangerous|illegal|unethical",
    ),
    # ------------------------------------------------------------------ content addressed to the model
    _p(
        "addresses the model",
        0.35,
        r"\b(?:note|message|instructions?)\s+(?:to|for)\s+(?:the\s+|all\s+|any\s+)?"
        r"(?:ai|llm|language\s+model|assistant|chatbot|gpt|model)s?\b|<!--\s*(?:ai|assistant)|\bai\s+assistant\s*:",
        "note to|note for|message to|message for|instruction to|instruction for|instructions to|instructions for|<!--"
        "|ai assistant",
    ),
    _p(
        "addresses the model",
        0.55,
        r"\b(?:note|message|instructions?)\s+(?:to|for)\s+(?:the\s+|all\s+|any\s+)?"
        r"(?:ai|llm|language\s+model|assistant|chatbot|gpt|model)s?(?:\s+(?:systems?|agents?|models?|readers?))?\s*:",
        "note to|note for|message to|message for|instruction to|instruction for|instructions to|instructions for",
    ),
    _p("context delimiter", 0.3, r"={3,}\s*end\s+of\s+(?:document|context|input|text)\b", "end of"),
)

# What may precede an override verb in its sentence for it to read as a command to the model.
IMPERATIVE_LEAD = re.compile(
    r"\W*(?:(?:please|kindly|now|just|and|then|so|also|instead|first|you\s+must|you\s+should|you\s+will|you\s+need\s+to"
    r"|you\s+have\s+to|i\s+(?:want|need|order|command|instruct|ask)\s+you\s+to|can\s+you|could\s+you|will\s+you|would\s+you"
    r"|(?:you\s+are\s+)?(?:now\s+)?(?:allowed|permitted|free)\s+to|from\s+now\s+on|assistant|ai|chatgpt|claude|model"
    r"|p\.?s\.?|important|note|okay|ok|stop|bitte|por\s+favor|ahora|maintenant|jetzt|und|y|et|s'il\s+te\s+plait"
    r"|s'il\s+vous\s+plait)\W*)*"
)
# Words that mark a sentence as talking about injection rather than performing it.
DISCUSSION_CUES = re.compile(
    r"\b(?:attacks?|defen[cds]\w*|protect\w*|prevent\w*|detect\w*|mitigat\w*"
    r"|classif\w*|injections?|vulnerab\w*|owasp|red[- ]team\w*|security|researchers?|papers?"
    r"|examples?\s+(?:include|are|of|like)|for\s+example|such\s+as"
    r"|(?:phrases?|prompts?|strings?|inputs?|payloads?)\s+like|what\s+is|what\s+does|why\s+do"
    r"|how\s+(?:do|can|should)\s+(?:i|we|you)\s+(?:stop|block|defend|detect|prevent|handle|protect|guard)"
    r"|stop\s+(?:users|people|them)|unit\s+tests?|test\s+cases?|benchmarks?|false\s+positives?"
    r"|(?:told|asked)\s+(?:me|us|him|her|them)\s+to)\b"
)
QUOTES = frozenset("'\"`")
