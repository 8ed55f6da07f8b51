package org.adcsr.srcore

import kotlin.math.abs
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertTrue

class ColorFixTest {
    private fun image(h: Int, w: Int, f: (Int, Int, Int) -> Float) =
        FloatImage(3, h, w).also { img -> for (c in 0 until 3) for (y in 0 until h) for (x in 0 until w) img[c, y, x] = f(c, y, x) }

    @Test
    fun adainMatchesEachChannelsMeanAndStdToTheLr() {
        val lr = image(16, 16) { c, y, x -> 0.3f + 0.1f * c + 0.02f * ((y + x) % 5) }
        val sr = image(64, 64) { c, y, x -> 0.6f - 0.1f * c + 0.05f * ((y * 3 + x) % 7) }
        val fixed = ColorFix.ADAIN.apply(sr, lr)
        for (c in 0 until 3) {
            val (lm, ls) = ColorFix.stats(lr, c)
            val (fm, fs) = ColorFix.stats(fixed, c)
            assertTrue(abs(lm - fm) < 1e-5 && abs(ls - fs) < 1e-4, "channel $c: $fm/$fs against $lm/$ls")
        }
    }

    @Test
    fun waveletTakesLowFrequenciesFromTheLr() {
        val lr = image(8, 8) { c, _, _ -> 0.25f + 0.25f * c }
        val sr = image(32, 32) { _, y, x -> if ((y + x) % 2 == 0) 0.9f else 0.7f }  // all detail, mean 0.8
        val fixed = ColorFix.WAVELET.apply(sr, lr)
        for (c in 0 until 3) {
            val (mean, _) = ColorFix.stats(fixed, c)
            assertTrue(abs(mean - (0.25 + 0.25 * c)) < 2e-3, "channel $c mean $mean")
        }
        assertTrue(abs(fixed[0, 10, 10] - fixed[0, 10, 11]) > 0.1f)  // the checkerboard survives
    }

    @Test
    fun bicubicKeepsConstantsAndMatchesTorchOnARamp() {
        val flat = ColorFix.bicubic(image(5, 7) { _, _, _ -> 0.4f }, 20, 28)
        for (v in flat.data) assertTrue(abs(v - 0.4f) < 1e-6f)
        // torch: F.interpolate(torch.arange(4.).view(1,1,1,4), size=(1,8), mode="bicubic", align_corners=False)
        val ramp = ColorFix.bicubic(FloatImage(1, 1, 4, floatArrayOf(0f, 1f, 2f, 3f)), 1, 8)
        val torch = floatArrayOf(-0.10546875f, 0.19140625f, 0.66796875f, 1.296875f, 1.703125f, 2.33203125f, 2.80859375f, 3.10546875f)
        for (k in 0 until 8) assertEquals(torch[k], ramp.data[k], 1e-6f)
    }
}
