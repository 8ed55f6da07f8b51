package org.adcsr.srcore

import java.io.File
import kotlin.system.exitProcess

/** `ContractCheckKt MODELS_DIR`: what the app does at start, on a folder staged by
 * `adcsr export android` (tests/test_android_core.py runs it on the CI pipeline's artifacts). */
fun main(args: Array<String>) {
    val dir = File(args[0])
    try {
        val contract = ModelContract.parse(File(dir, "contract.json").readText())
        contract.verifyFiles { path -> File(dir, path).takeIf { it.isFile }?.inputStream() }
        println("ok: tile ${contract.tile}, ×${contract.scale}, ${contract.colorFix}, " +
            contract.backends.joinToString { "${it.id} (${it.files.size} files)" })
    } catch (e: ContractException) {
        println("refused: ${e.message}")
        exitProcess(1)
    }
}
