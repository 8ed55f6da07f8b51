// Pure Kotlin/JVM: no Android imports, so its unit tests run on any JVM (and in this project's CI
// with kotlinc, see tests/test_android_core.py).
plugins {
    alias(libs.plugins.kotlin.jvm)
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    testImplementation(libs.junit)
    testImplementation(libs.kotlin.test.junit)
}
