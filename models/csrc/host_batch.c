/*
 * Host driver for checking the exported C against the Python references: reads windows of int16
 * wire counts ([TAG_MODEL_WINDOW][TAG_MODEL_AXES], native byte order) from stdin until EOF and
 * writes, per window, the class as int32 and then TAG_MODEL_CLASSES logits (int32 for the
 * fixed-point variants, float32 for the float variant) to stdout.
 */
#include <stdio.h>

#include "tag_model.h"

int main(void)
{
    static int16_t window[TAG_MODEL_WINDOW][TAG_MODEL_AXES];
    static tag_model_t model;
    tag_model_init(&model);
    while (fread(window, sizeof window, 1, stdin) == 1) {
        const int32_t class_index = tag_model_run(&model, &window[0][0]);
        const tag_logit_t *logits = tag_model_logits(&model);
        fwrite(&class_index, sizeof class_index, 1, stdout);
        for (int c = 0; c < TAG_MODEL_CLASSES; ++c) {
#if TAG_MODEL_LOGIT_FLOAT
            const float value = logits[c];
#else
            const int32_t value = logits[c];
#endif
            fwrite(&value, sizeof value, 1, stdout);
        }
    }
    return ferror(stdin) || ferror(stdout) ? 1 : 0;
}
