/* The split of text into pieces before byte-pair merging, as tiktoken's patterns do it (_pretokenize.c). */
#ifndef GATEWAY_PRETOKENIZE_H
#define GATEWAY_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

enum pattern { PATTERN_CL100K, PATTERN_O200K };

/* End (a byte offset) of the piece that starts at byte `start` of `text`: valid UTF-8 of `len` bytes,
 * start < len. Always > start. */
size_t next_piece(enum pattern pattern, const uint8_t *text, size_t len, size_t start);

/* Fills the lookup table of the Basic Multilingual Plane; call once before next_piece. */
void pretokenize_init(void);

/* The Unicode version of the character classes (the regex crate's in tiktoken's wheel). */
const char *unicode_version(void);

#endif
