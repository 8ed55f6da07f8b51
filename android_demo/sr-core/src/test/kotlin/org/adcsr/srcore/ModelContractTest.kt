package org.adcsr.srcore

import java.security.MessageDigest
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class ModelContractTest {
    private val bytes = "not really a model".toByteArray()
    private val sha = MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }

    private fun contract(tile: Int = 32, shape: String = "[1, 3, 128, 128]", format: String = ModelContract.FORMAT) = """
        {"format": "$format", "scale": 4, "lr_tile": $tile, "multiple": 16, "overlap": 8, "color_fix": "adain",
         "input": {"name": "lr", "shape": [1, 3, $tile, $tile], "dtype": "float32", "range": [0, 1]},
         "output": {"name": "sr", "shape": $shape, "dtype": "float32"},
         "backends": [{"id": "xnnpack-cpu", "kind": "executorch-xnnpack", "label": "ExecuTorch XNNPACK (CPU)",
                       "precision": "fp32", "files": [{"path": "executorch/student_xnnpack.pte", "sha256": "$sha", "bytes": ${bytes.size}}]}]}
    """

    @Test
    fun aValidContractParsesAndItsFilesVerify() {
        val c = ModelContract.parse(contract())
        assertEquals(32, c.tile)
        assertEquals(ColorFix.ADAIN, c.colorFix)
        assertEquals("executorch/student_xnnpack.pte", c.backends.single().entry.path)
        c.verifyFiles { bytes.inputStream() }
    }

    @Test
    fun mismatchesAreRefusedWithOneClearMessage() {
        val shape = assertFailsWith<ContractException> { ModelContract.parse(contract(shape = "[1, 3, 64, 64]")) }
        assertTrue("not ×4 of the tile" in shape.message!!)
        val format = assertFailsWith<ContractException> { ModelContract.parse(contract(format = "other/2")) }
        assertTrue("is not ${ModelContract.FORMAT}" in format.message!!)
        val json = assertFailsWith<ContractException> { ModelContract.parse("{\"format\": ") }
        assertTrue("not valid JSON" in json.message!!)
        val c = ModelContract.parse(contract())
        val missing = assertFailsWith<ContractException> { c.verifyFiles { null } }
        assertTrue("is missing from the app" in missing.message!!)
        val changed = assertFailsWith<ContractException> { c.verifyFiles { "other bytes".byteInputStream() } }
        assertTrue("does not match the contract" in changed.message!!)
    }

    @Test
    fun jsonReadsWhatPythonWrites() {
        val v = Json.parse("""{"a": [1, 2.5, -3e2], "b": "x\"y\u00e9", "c": null, "d": true}""") as Map<*, *>
        assertEquals(listOf(1.0, 2.5, -300.0), v["a"])
        assertEquals("x\"yé", v["b"])
        assertEquals(null, v["c"])
        assertEquals(true, v["d"])
    }
}
